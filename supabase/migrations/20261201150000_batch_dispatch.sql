-- The worker's outbox in two round trips per batch instead of two per dispatch.
--
-- A worker batch holds up to ten events; until now each event's pending rows were leased with
-- claim_outbox_dispatches and each performed row was marked sent with complete_outbox_dispatch,
-- one call each. claim_batch_dispatches leases the pending rows of every event of the batch
-- at once, with the same lease rules; complete_outbox_dispatches marks many performed rows
-- sent in one call, each through complete_outbox_dispatch (20261201100000) in a savepoint of
-- its own, so one row that cannot be recorded leaves the others recorded. Failures are still
-- released one by one (release_outbox_dispatch): they are the exception.
--
-- New functions only: claim_outbox_dispatches and complete_outbox_dispatch stay as they are
-- (the reconciler and earlier workers use them).

-- Lease the pending outbox rows of these events. Rows another worker holds (an unexpired
-- lease, or a row lock of a concurrent claim) are skipped: that worker sends them.
create or replace function public.claim_batch_dispatches(
  p_event_ids jsonb,
  p_lease_seconds integer default 120
) returns jsonb
language sql
set search_path = public, pg_temp
as $$
  with picked as (
    select id from outbox
    where event_id in (select jsonb_array_elements_text(coalesce(p_event_ids, '[]'::jsonb)))
      and status = 'pending'
      and (locked_until is null or locked_until < now())
    order by id
    for update skip locked
  ), claimed as (
    update outbox o
    set attempts = o.attempts + 1,
        locked_until = now() + make_interval(secs => greatest(p_lease_seconds, 1))
    from picked
    where o.id = picked.id
    returning o.id, o.kind, o.dedupe_key, o.event_id, o.payload, o.attempts, o.created_at
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'kind', kind, 'dedupe_key', dedupe_key,
                                               'event_id', event_id, 'payload', payload,
                                               'attempts', attempts, 'created_at', created_at)
                            order by id), '[]'::jsonb)
  from claimed
$$;

-- Mark performed rows sent: p_dispatches is [{"id": …, "result": {…}}, …], taken in id order
-- (like every claim, so two callers lock rows in one order). Returns one entry per row:
-- {"id", "completed"} as complete_outbox_dispatch answers, or {"id", "completed": false,
-- "error": SQLSTATE} when recording that row failed (it stays leased, and pending: the next
-- attempt after its lease sends the same document with the same idempotency key).
create or replace function public.complete_outbox_dispatches(p_dispatches jsonb)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_item jsonb;
  v_id bigint;
  v_done jsonb;
  v_out jsonb := '[]'::jsonb;
begin
  for v_item in
    select value from jsonb_array_elements(coalesce(p_dispatches, '[]'::jsonb))
    order by (value ->> 'id')::bigint
  loop
    v_id := (v_item ->> 'id')::bigint;
    begin
      v_done := public.complete_outbox_dispatch(v_id, coalesce(v_item -> 'result', '{}'::jsonb));
      v_out := v_out || jsonb_build_array(jsonb_build_object('id', v_id) || v_done);
    exception when others then
      v_out := v_out || jsonb_build_array(
        jsonb_build_object('id', v_id, 'completed', false, 'error', sqlstate));
    end;
  end loop;
  return v_out;
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.claim_batch_dispatches(jsonb, integer)',
    'public.complete_outbox_dispatches(jsonb)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
