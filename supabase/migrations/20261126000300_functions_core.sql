-- Core SQL functions. Every multi-step write is one function called in one round trip, by
-- supabase-py rpc in production or over DATABASE_URL locally: one implementation for both.
-- Errors the API reports use our own SQLSTATEs: PY404 not found, PY409 conflict, PY422
-- unprocessable; adapters map them to domain errors.

-- Append a payment_logs row; a repeated Stripe event id is absorbed, not duplicated.
create or replace function public.log_payment(
  p_event_type text,
  p_user_id text default null,
  p_amount bigint default null,
  p_currency text default null,
  p_status text default null,
  p_stripe_event_id text default null,
  p_stripe_object_id text default null,
  p_metadata jsonb default '{}'::jsonb
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
begin
  insert into payment_logs (event_type, user_id, amount, currency, status,
                            stripe_event_id, stripe_object_id, metadata)
  values (p_event_type, p_user_id, p_amount, p_currency, p_status,
          p_stripe_event_id, p_stripe_object_id, coalesce(p_metadata, '{}'::jsonb))
  on conflict (stripe_event_id) do nothing
  returning id into v_id;
  return jsonb_build_object('id', v_id, 'inserted', v_id is not null);
end
$$;

-- A member's payment history, newest first, keyset-paginated by id. SECURITY INVOKER on
-- purpose: it runs as the member (role authenticated), so RLS, not this WHERE clause, is
-- what keeps other members' rows out.
create or replace function public.member_payment_logs(
  p_limit integer default 20,
  p_before_id bigint default null
) returns jsonb
language sql stable security invoker
set search_path = public, pg_temp
as $$
  select coalesce(jsonb_agg(to_jsonb(l) order by l.id desc), '[]'::jsonb)
  from (
    select id, created_at, event_type, amount, currency, status, stripe_object_id, metadata
    from payment_logs
    where p_before_id is null or id < p_before_id
    order by id desc
    limit least(greatest(coalesce(p_limit, 20), 1), 100)
  ) l
$$;

revoke all on function public.log_payment(text, text, bigint, text, text, text, text, jsonb)
  from public, anon, authenticated;
grant execute on function public.log_payment(text, text, bigint, text, text, text, text, jsonb)
  to service_role;
revoke all on function public.member_payment_logs(integer, bigint) from public, anon;
grant execute on function public.member_payment_logs(integer, bigint)
  to authenticated, service_role;
