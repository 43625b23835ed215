-- One transaction per SQS batch instead of one per event.
--
-- Each event is applied in its own savepoint (a PL/pgSQL exception block), so one event the
-- database refuses is rolled back alone and reported alone, while the batch pays for a single
-- commit (and WAL flush). Results come back in input order. The worker sorts a batch by event
-- id, so two workers that receive the same events take their ledger locks in the same order.

create or replace function public.process_stripe_events(p_events jsonb) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_event jsonb;
  v_result jsonb;
  v_results jsonb := '[]'::jsonb;
begin
  for v_event in select value from jsonb_array_elements(p_events) loop
    begin
      v_result := public.process_stripe_event(
        v_event ->> 'event_id',
        v_event ->> 'event_type',
        (v_event ->> 'event_created')::timestamptz,
        v_event ->> 'object_id',
        v_event ->> 'action',
        v_event -> 'data',
        v_event -> 'log');
    exception when others then
      -- The code only: messages may quote values from the event.
      v_result := jsonb_build_object('outcome', 'error', 'event_id', v_event ->> 'event_id',
                                     'sqlstate', sqlstate);
    end;
    v_results := v_results || jsonb_build_array(v_result);
  end loop;
  return v_results;
end
$$;

revoke all on function public.process_stripe_events(jsonb) from public, anon, authenticated;
grant execute on function public.process_stripe_events(jsonb) to service_role;
