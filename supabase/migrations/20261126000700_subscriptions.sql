-- Subscription management (POST /v1/subscriptions..., GET /v1/me/subscriptions).
--
-- The subscriptions table is written only by the webhook worker (customer.subscription.*
-- events, ordered by state_as_of); these functions read it to refuse a second subscription to
-- the same plan and to check who owns a subscription, log each change a member asks for, and
-- list a member's subscriptions under RLS.

-- Looking up the log rows of one Stripe object (a subscription's history, replay checks).
create index if not exists payment_logs_stripe_object_id_idx
  on public.payment_logs (stripe_object_id);

-- Whether the member already holds this plan in a state that still bills or can bill again.
create or replace function public.member_has_live_subscription(p_member_id text, p_product text)
returns boolean
language sql stable
set search_path = public, pg_temp
as $$
  select exists (
    select 1 from subscriptions
    where member_id = p_member_id and product = p_product
      and status in ('active', 'trialing', 'past_due', 'paused')
  )
$$;

-- Who may act on a subscription: the member's Stripe customer, and whether our table allows
-- the member to act on p_subscription_id. A subscription we do not know yet (the worker has
-- not seen its first event) is allowed here; the caller then checks Stripe's own customer.
-- One answer for "someone else's" and "no such subscription", so neither is revealed.
create or replace function public.subscription_access(p_member_id text, p_subscription_id text)
returns jsonb
language plpgsql stable
set search_path = public, pg_temp
as $$
declare
  v_row subscriptions;
  v_customer text;
begin
  select * into v_row from subscriptions where id = p_subscription_id;
  select stripe_customer_id into v_customer from customers where member_id = p_member_id;
  if v_customer is null and v_row.member_id = p_member_id then
    v_customer := v_row.stripe_customer_id;
  end if;
  return jsonb_build_object(
    'customer_id', v_customer,
    'allowed', v_customer is not null
               and (v_row.id is null
                    or v_row.member_id = p_member_id
                    or (v_row.member_id is null and v_row.stripe_customer_id = v_customer)));
end
$$;

-- One payment_logs row per change a member asked for (subscription.change_requested, ...).
-- A replayed request (same idempotency key) is absorbed: Stripe replays its answer, and the
-- log must not count the change twice.
create or replace function public.log_subscription_action(
  p_member_id text,
  p_subscription_id text,
  p_action text,
  p_idempotency_key text,
  p_status text default null,
  p_amount bigint default null,
  p_currency text default null,
  p_metadata jsonb default '{}'::jsonb
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_event_type text;
  v_id bigint;
begin
  if p_action not in ('change', 'cancel', 'pause', 'resume') then
    raise exception using errcode = 'PY400', message = 'unknown subscription action';
  end if;
  if p_idempotency_key is null or p_subscription_id is null then
    raise exception using errcode = 'PY400',
      message = 'subscription and idempotency key are required';
  end if;
  v_event_type := 'subscription.' || p_action || '_requested';
  -- Serialise the two requests of a double click on the same key.
  perform pg_advisory_xact_lock(hashtextextended(p_idempotency_key, 0));
  if exists (
    select 1 from payment_logs
    where stripe_object_id = p_subscription_id and event_type = v_event_type
      and metadata ->> 'idempotency_key' = p_idempotency_key
  ) then
    return jsonb_build_object('id', null, 'inserted', false);
  end if;
  insert into payment_logs (event_type, user_id, amount, currency, status, stripe_object_id,
                            metadata)
  values (v_event_type, p_member_id, p_amount, p_currency, p_status, p_subscription_id,
          coalesce(p_metadata, '{}'::jsonb)
            || jsonb_build_object('action', p_action, 'idempotency_key', p_idempotency_key))
  returning id into v_id;
  return jsonb_build_object('id', v_id, 'inserted', true);
end
$$;

-- The calling member's subscriptions, newest first. SECURITY INVOKER on purpose: it runs as
-- the member (role authenticated), so RLS, not a WHERE clause, keeps other members' rows out.
create or replace function public.member_subscriptions()
returns jsonb
language sql stable security invoker
set search_path = public, pg_temp
as $$
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', s.id,
           'product', s.product,
           'status', s.status,
           'paused', s.pause_behavior is not null or s.status = 'paused',
           'pause_behavior', s.pause_behavior,
           'resumes_at', s.resumes_at,
           'cancel_at_period_end', s.cancel_at_period_end,
           'current_period_end', s.current_period_end)
         order by s.created_at desc, s.id), '[]'::jsonb)
  from subscriptions s
$$;

-- Grants. Service functions to the service role only; the member read to authenticated only,
-- since as the service role (which bypasses RLS) it would list every member's subscriptions.
-- Supabase's default privileges grant new functions to anon, authenticated and service_role.
do $$
declare
  f text;
begin
  foreach f in array array[
    'public.member_has_live_subscription(text, text)',
    'public.subscription_access(text, text)',
    'public.log_subscription_action(text, text, text, text, text, bigint, text, jsonb)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;

revoke all on function public.member_subscriptions() from public, anon, service_role;
grant execute on function public.member_subscriptions() to authenticated;
