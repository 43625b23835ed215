-- Stripe webhook processing.
--
-- The worker calls process_stripe_event once per event. In one transaction it claims the event
-- id in processed_events (a duplicate delivery, a redelivered SQS message or a second worker
-- racing on the same event finds the id taken and changes nothing), applies the event's effect
-- to the state tables, queues side effects in outbox and writes the event's payment_logs row.
-- The worker then claims the event's pending outbox rows with a short lease, performs them
-- (Make.com, Stripe) and marks each one sent, or releases it for the SQS retry.

-- A claimed outbox row is leased, not locked: the lease outlives the Lambda that claimed it,
-- so a second worker never sends it again while the first may still be sending it.
alter table public.outbox add column if not exists locked_until timestamptz;
-- event.created of the newest Stripe event applied to a refund (null: written by our API).
alter table public.refunds add column if not exists state_as_of timestamptz;

-- Purchase status transitions driven by payment events; anything else keeps its status, so an
-- older or repeated event never moves a purchase backwards (paid never becomes processing).
create or replace function public._purchase_may_become(p_current text, p_target text)
returns boolean
language sql immutable
set search_path = public, pg_temp
as $$
  select case p_target
    when 'processing' then p_current = 'open'
    when 'paid' then p_current in ('open', 'processing', 'failed')
    when 'failed' then p_current in ('open', 'processing')
    when 'expired' then p_current = 'open'
    else false
  end
$$;

-- The status of a paid purchase given what has been refunded of it. Disputed and switched
-- purchases keep their status: a refund does not settle a dispute or undo a switch.
create or replace function public._purchase_status_after_refunds(
  p_status text, p_amount bigint, p_refunded bigint
) returns text
language sql immutable
set search_path = public, pg_temp
as $$
  select case
    when p_status not in ('paid', 'partially_refunded', 'refunded') then p_status
    when p_refunded >= p_amount and p_amount > 0 then 'refunded'
    when p_refunded > 0 then 'partially_refunded'
    else 'paid'
  end
$$;

-- Precedence of refund statuses written by events of the same second: a terminal status wins.
create or replace function public._refund_status_rank(p_status text) returns integer
language sql immutable
set search_path = public, pg_temp
as $$
  select case p_status
    when 'failed' then 3 when 'canceled' then 3
    when 'succeeded' then 2
    else 1
  end
$$;

create or replace function public._enqueue_add_project(p_event_id text, p_purchase purchases)
returns void
language sql
set search_path = public, pg_temp
as $$
  insert into outbox (kind, dedupe_key, event_id, payload)
  values ('add_project', 'add_project:' || p_purchase.checkout_session_id, p_event_id,
          jsonb_build_object(
            'member_id', p_purchase.member_id,
            'product', p_purchase.product,
            'amount', p_purchase.amount,
            'currency', p_purchase.currency,
            'checkout_session_id', p_purchase.checkout_session_id,
            'payment_intent', p_purchase.payment_intent_id))
  on conflict (dedupe_key) do nothing
$$;

-- What a purchase that just became paid sets in motion: the Make.com add_project scenario
-- and, for a product switch, the refund of the purchase it replaces.
create or replace function public._on_purchase_paid(p_event_id text, p_purchase purchases)
returns void
language plpgsql
set search_path = public, pg_temp
as $$
begin
  perform public._enqueue_add_project(p_event_id, p_purchase);
  if p_purchase.switch_from is not null then
    insert into outbox (kind, dedupe_key, event_id, payload)
    values ('switch_refund', 'switch_refund:' || p_purchase.switch_from, p_event_id,
            jsonb_build_object(
              'payment_intent', p_purchase.switch_from,
              'product', p_purchase.product,
              'member_id', p_purchase.member_id,
              'checkout_session_id', p_purchase.checkout_session_id))
    on conflict (dedupe_key) do nothing;
  end if;
end
$$;

-- Recompute what has been refunded of a payment from the refunds we know of. p_floor is the
-- charge's own amount_refunded when the event did not list its refunds.
create or replace function public._recompute_refunded(p_payment_intent text, p_floor bigint)
returns purchases
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_refunded bigint;
  v_row purchases;
begin
  select coalesce(sum(amount), 0) into v_refunded
  from refunds
  where payment_intent_id = p_payment_intent
    and status in ('pending', 'requires_action', 'succeeded');
  v_refunded := greatest(v_refunded, coalesce(p_floor, 0));
  update purchases
  set amount_refunded = v_refunded,
      status = public._purchase_status_after_refunds(status, amount, v_refunded),
      updated_at = now()
  where payment_intent_id = p_payment_intent
  returning * into v_row;
  return v_row;
end
$$;

-- Insert or update a refund from a Stripe refund object, keeping what our admin API recorded
-- (requested_by, note, reason) and never letting an older event overwrite a newer status.
create or replace function public._upsert_refund(p_refund jsonb, p_event_created timestamptz)
returns void
language plpgsql
set search_path = public, pg_temp
as $$
begin
  if p_refund ->> 'payment_intent' is null or coalesce((p_refund ->> 'amount')::bigint, 0) <= 0
  then
    return;
  end if;
  insert into refunds as r (id, payment_intent_id, member_id, amount, currency, status, reason,
                            state_as_of)
  values (
    p_refund ->> 'id',
    p_refund ->> 'payment_intent',
    coalesce(p_refund ->> 'member_id',
             (select member_id from purchases where payment_intent_id = p_refund ->> 'payment_intent')),
    (p_refund ->> 'amount')::bigint,
    p_refund ->> 'currency',
    p_refund ->> 'status',
    p_refund ->> 'reason',
    p_event_created)
  on conflict (id) do update
  set status = case
        when r.state_as_of is null
          or excluded.state_as_of > r.state_as_of
          or (excluded.state_as_of = r.state_as_of
              and public._refund_status_rank(excluded.status)
                  >= public._refund_status_rank(r.status))
        then excluded.status
        else r.status
      end,
      amount = excluded.amount,
      reason = coalesce(r.reason, excluded.reason),
      member_id = coalesce(r.member_id, excluded.member_id),
      state_as_of = greatest(r.state_as_of, excluded.state_as_of),
      updated_at = now();
end
$$;

-- checkout.session.* : the purchase keyed by its Checkout Session.
create or replace function public._apply_checkout_session(p_event_id text, p_data jsonb)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_session text := p_data ->> 'checkout_session_id';
  v_target text := p_data ->> 'target_status';
  v_member text := p_data ->> 'member_id';
  v_row purchases;
  v_before text;
begin
  if p_data ->> 'customer' is not null and v_member is not null then
    insert into customers (member_id, stripe_customer_id)
    values (v_member, p_data ->> 'customer')
    on conflict do nothing;
  end if;

  select * into v_row from purchases where checkout_session_id = v_session for update;
  if not found then
    if p_data ->> 'product' is null then
      -- Not a session our checkout created (no product): audit it, change nothing.
      return jsonb_build_object('outcome', 'applied', 'member_id', v_member,
                                'attributed', false);
    end if;
    insert into purchases (checkout_session_id, payment_intent_id, member_id, product, amount,
                           currency, status, switch_from)
    values (v_session, p_data ->> 'payment_intent', v_member, p_data ->> 'product',
            coalesce((p_data ->> 'amount')::bigint, 0), coalesce(p_data ->> 'currency', 'usd'),
            v_target, p_data ->> 'switch_from')
    on conflict (checkout_session_id) do nothing
    returning * into v_row;
    if not found then
      -- Created by a concurrent transaction since our select: take its row and go on.
      select * into v_row from purchases where checkout_session_id = v_session for update;
    else
      v_before := 'new';
    end if;
  end if;

  if v_before is null then
    v_before := v_row.status;
    update purchases
    set payment_intent_id = coalesce(payment_intent_id, p_data ->> 'payment_intent'),
        member_id = coalesce(member_id, v_member),
        switch_from = coalesce(switch_from, p_data ->> 'switch_from'),
        amount = case when status in ('open', 'processing')
                      then coalesce((p_data ->> 'amount')::bigint, amount) else amount end,
        status = case when public._purchase_may_become(status, v_target)
                      then v_target else status end,
        updated_at = now()
    where id = v_row.id
    returning * into v_row;
  end if;

  if v_row.status = 'paid' and v_before is distinct from 'paid' then
    perform public._on_purchase_paid(p_event_id, v_row);
  end if;
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status);
end
$$;

-- payment_intent.succeeded / payment_failed: the purchase paid by this intent, if we have one.
create or replace function public._apply_payment_intent(p_event_id text, p_data jsonb)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row purchases;
  v_before text;
begin
  select * into v_row from purchases
  where payment_intent_id = p_data ->> 'payment_intent' for update;
  if not found then
    return jsonb_build_object('outcome', 'applied', 'member_id', null);
  end if;
  v_before := v_row.status;
  if public._purchase_may_become(v_row.status, p_data ->> 'target_status') then
    update purchases set status = p_data ->> 'target_status', updated_at = now()
    where id = v_row.id returning * into v_row;
  end if;
  if v_row.status = 'paid' and v_before <> 'paid' then
    perform public._on_purchase_paid(p_event_id, v_row);
  end if;
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status);
end
$$;

-- refund.created / updated / failed.
create or replace function public._apply_refund(p_data jsonb, p_event_created timestamptz)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row purchases;
begin
  perform public._upsert_refund(p_data -> 'refund', p_event_created);
  if p_data -> 'refund' ->> 'payment_intent' is not null then
    v_row := public._recompute_refunded(p_data -> 'refund' ->> 'payment_intent', 0);
  end if;
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status,
                            'amount_refunded', v_row.amount_refunded);
end
$$;

-- charge.refunded: every refund the charge lists, then the purchase's refunded amount.
create or replace function public._apply_charge_refunded(p_data jsonb, p_event_created timestamptz)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_refund jsonb;
  v_row purchases;
  v_listed boolean := jsonb_typeof(p_data -> 'refunds') = 'array';
begin
  if p_data ->> 'payment_intent' is null then
    return jsonb_build_object('outcome', 'applied', 'member_id', null);
  end if;
  if v_listed then
    for v_refund in select * from jsonb_array_elements(p_data -> 'refunds') loop
      perform public._upsert_refund(v_refund, p_event_created);
    end loop;
  end if;
  v_row := public._recompute_refunded(
    p_data ->> 'payment_intent',
    case when v_listed then 0 else (p_data ->> 'amount_refunded')::bigint end);
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status,
                            'amount_refunded', v_row.amount_refunded);
end
$$;

-- charge.dispute.created / closed.
create or replace function public._apply_dispute(p_data jsonb, p_event_type text)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row purchases;
begin
  select * into v_row from purchases
  where payment_intent_id = p_data ->> 'payment_intent' for update;
  if not found then
    return jsonb_build_object('outcome', 'applied', 'member_id', null);
  end if;
  if p_event_type = 'charge.dispute.created' then
    -- A closing that arrived first must not be undone by the older opening.
    if v_row.status in ('paid', 'partially_refunded', 'refunded')
       and not exists (select 1 from processed_events
                       where object_id = p_data ->> 'dispute_id'
                         and event_type = 'charge.dispute.closed') then
      update purchases set status = 'disputed', updated_at = now()
      where id = v_row.id returning * into v_row;
    end if;
  elsif v_row.status = 'disputed' and p_data ->> 'status' in ('won', 'warning_closed') then
    update purchases
    set status = public._purchase_status_after_refunds('paid', amount, amount_refunded),
        updated_at = now()
    where id = v_row.id returning * into v_row;
  end if;
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status);
end
$$;

-- customer.subscription.*: the subscription's state as of the newest event applied.
create or replace function public._apply_subscription(
  p_data jsonb, p_event_type text, p_event_created timestamptz
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_customer text := p_data ->> 'customer';
  v_member text;
  v_applied text;
  v_existing subscriptions;
begin
  select * into v_existing from subscriptions where id = p_data ->> 'subscription_id';
  v_member := coalesce(p_data ->> 'member_id', v_existing.member_id,
                       (select member_id from customers where stripe_customer_id = v_customer));
  -- The guard sits in ON CONFLICT ... WHERE so that it sees the row as committed by a
  -- concurrent worker, not the snapshot read above.
  insert into subscriptions as s (id, member_id, stripe_customer_id, product, price_id, status,
                                  cancel_at_period_end, pause_behavior, resumes_at,
                                  current_period_end, state_as_of)
  values (p_data ->> 'subscription_id', v_member, v_customer, p_data ->> 'product',
          p_data ->> 'price_id', p_data ->> 'status',
          coalesce((p_data ->> 'cancel_at_period_end')::boolean, false),
          p_data ->> 'pause_behavior', (p_data ->> 'resumes_at')::timestamptz,
          (p_data ->> 'current_period_end')::timestamptz, p_event_created)
  on conflict (id) do update
  set member_id = coalesce(excluded.member_id, s.member_id),
      stripe_customer_id = excluded.stripe_customer_id,
      product = coalesce(excluded.product, s.product),
      price_id = coalesce(excluded.price_id, s.price_id),
      status = excluded.status,
      cancel_at_period_end = excluded.cancel_at_period_end,
      pause_behavior = excluded.pause_behavior,
      resumes_at = excluded.resumes_at,
      current_period_end = coalesce(excluded.current_period_end, s.current_period_end),
      state_as_of = excluded.state_as_of,
      updated_at = now()
  where (excluded.state_as_of > s.state_as_of
         or (excluded.state_as_of = s.state_as_of
             and p_event_type <> 'customer.subscription.created'))
    -- Stripe never revives a canceled subscription: a later "active" is an old event.
    and not (s.status = 'canceled' and excluded.status <> 'canceled')
  returning s.id into v_applied;

  if v_applied is null then
    return jsonb_build_object('outcome', 'stale', 'member_id', v_member);
  end if;
  if v_member is not null and v_customer is not null then
    insert into customers (member_id, stripe_customer_id)
    values (v_member, v_customer)
    on conflict do nothing;
  end if;
  return jsonb_build_object('outcome', 'applied', 'member_id', v_member,
                            'subscription_status', p_data ->> 'status');
end
$$;

-- A subscription-mode Checkout Session: remember whose customer it is; subscription events
-- carry the state.
create or replace function public._apply_subscription_checkout(p_data jsonb)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
begin
  if p_data ->> 'customer' is not null and p_data ->> 'member_id' is not null then
    insert into customers (member_id, stripe_customer_id)
    values (p_data ->> 'member_id', p_data ->> 'customer')
    on conflict do nothing;
  end if;
  return jsonb_build_object('outcome', 'applied', 'member_id', p_data ->> 'member_id');
end
$$;

-- The one call per Stripe event. Returns {"outcome": "applied"|"stale"|"ignored"|"duplicate",
-- "member_id", ...}. p_log holds the payment_logs values the event itself carries (amount,
-- currency, status, user_id, customer, metadata); the user falls back to the purchase's or
-- the customer mapping's member.
-- Whether the event left side effects to perform: lets the worker skip the outbox round
-- trip for the (most common) events that queue nothing.
create or replace function public._has_pending_outbox(p_event_id text) returns boolean
language sql stable
set search_path = public, pg_temp
as $$ select exists (select 1 from outbox where event_id = p_event_id and status = 'pending') $$;

create or replace function public.process_stripe_event(
  p_event_id text,
  p_event_type text,
  p_event_created timestamptz,
  p_object_id text,
  p_action text,
  p_data jsonb default '{}'::jsonb,
  p_log jsonb default '{}'::jsonb
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_claimed text;
  v_result jsonb;
  v_outcome text;
  v_user_id text;
begin
  if p_event_id is null or p_event_type is null or p_event_created is null then
    raise exception using errcode = 'PY400', message = 'event id, type and created are required';
  end if;
  insert into processed_events (event_id, event_type, object_id, event_created, outcome)
  values (p_event_id, p_event_type, p_object_id, p_event_created, 'applied')
  on conflict (event_id) do nothing
  returning event_id into v_claimed;
  if v_claimed is null then
    -- A duplicate may still have a dispatch left over from a failed earlier attempt.
    return jsonb_build_object('outcome', 'duplicate', 'event_id', p_event_id,
                              'pending_outbox', public._has_pending_outbox(p_event_id));
  end if;

  v_result := case p_action
    when 'checkout_session' then public._apply_checkout_session(p_event_id, p_data)
    when 'subscription_checkout' then public._apply_subscription_checkout(p_data)
    when 'payment_intent' then public._apply_payment_intent(p_event_id, p_data)
    when 'refund' then public._apply_refund(p_data, p_event_created)
    when 'charge_refunded' then public._apply_charge_refunded(p_data, p_event_created)
    when 'dispute' then public._apply_dispute(p_data, p_event_type)
    when 'subscription' then public._apply_subscription(p_data, p_event_type, p_event_created)
    when 'ignore' then jsonb_build_object('outcome', 'ignored')
  end;
  if v_result is null then
    raise exception using errcode = 'PY400', message = 'unknown webhook action';
  end if;

  v_outcome := v_result ->> 'outcome';
  if v_outcome <> 'applied' then
    update processed_events set outcome = v_outcome where event_id = p_event_id;
  end if;
  if v_outcome in ('applied', 'stale') then
    v_user_id := coalesce(
      nullif(p_log ->> 'user_id', ''),
      v_result ->> 'member_id',
      (select member_id from customers where stripe_customer_id = p_log ->> 'customer'));
    insert into payment_logs (event_type, user_id, amount, currency, status, stripe_event_id,
                              stripe_object_id, metadata)
    values (p_event_type, v_user_id, (p_log ->> 'amount')::bigint, p_log ->> 'currency',
            p_log ->> 'status', p_event_id, p_object_id,
            coalesce(p_log -> 'metadata', '{}'::jsonb)
              || case when v_outcome = 'stale' then '{"stale": true}'::jsonb
                      else '{}'::jsonb end)
    on conflict (stripe_event_id) do nothing;
  end if;
  return v_result || jsonb_build_object('event_id', p_event_id, 'user_id', v_user_id,
                                        'pending_outbox', public._has_pending_outbox(p_event_id));
end
$$;

-- Lease the pending outbox rows of one event. Rows another worker holds (an unexpired lease,
-- or a row lock of a concurrent claim) are skipped: that worker sends them.
create or replace function public.claim_outbox_dispatches(
  p_event_id text,
  p_lease_seconds integer default 120
) returns jsonb
language sql
set search_path = public, pg_temp
as $$
  with picked as (
    select id from outbox
    where event_id = p_event_id
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
    returning o.id, o.kind, o.event_id, o.payload, o.attempts
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'kind', kind, 'event_id', event_id,
                                               'payload', payload, 'attempts', attempts)
                            order by id), '[]'::jsonb)
  from claimed
$$;

-- A side effect was performed: never send it again. A switch refund also records the refund
-- (with its note, as the admin API would) and marks the replaced purchase switched.
create or replace function public.complete_outbox_dispatch(
  p_id bigint,
  p_result jsonb default '{}'::jsonb
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row outbox;
  v_pi text;
begin
  update outbox
  set status = 'sent', sent_at = now(), locked_until = null, last_error = null
  where id = p_id and status = 'pending'
  returning * into v_row;
  if not found then
    return jsonb_build_object('completed', false);
  end if;
  if v_row.kind = 'switch_refund' then
    v_pi := v_row.payload ->> 'payment_intent';
    if p_result ->> 'refund_id' is not null then
      insert into refunds (id, payment_intent_id, member_id, amount, currency, status, reason,
                           note, requested_by)
      values (p_result ->> 'refund_id', v_pi, v_row.payload ->> 'member_id',
              (p_result ->> 'amount')::bigint, p_result ->> 'currency',
              p_result ->> 'status', 'requested_by_customer',
              'product switch to ' || (v_row.payload ->> 'product'), 'product_switch')
      on conflict (id) do update
      set note = coalesce(refunds.note, excluded.note),
          requested_by = coalesce(refunds.requested_by, excluded.requested_by),
          reason = coalesce(refunds.reason, excluded.reason),
          updated_at = now();
      perform public._recompute_refunded(v_pi, 0);
    end if;
    update purchases set status = 'switched', updated_at = now()
    where payment_intent_id = v_pi
      and status in ('paid', 'partially_refunded', 'refunded');
  end if;
  return jsonb_build_object('completed', true, 'kind', v_row.kind);
end
$$;

-- A side effect failed: free the row at once so the SQS retry of its event can claim it.
create or replace function public.release_outbox_dispatch(p_id bigint, p_error text)
returns void
language sql
set search_path = public, pg_temp
as $$
  update outbox
  set locked_until = null, last_error = left(p_error, 200)
  where id = p_id and status = 'pending'
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public._purchase_may_become(text, text)',
    'public._purchase_status_after_refunds(text, bigint, bigint)',
    'public._refund_status_rank(text)',
    'public._has_pending_outbox(text)',
    'public._enqueue_add_project(text, public.purchases)',
    'public._on_purchase_paid(text, public.purchases)',
    'public._recompute_refunded(text, bigint)',
    'public._upsert_refund(jsonb, timestamptz)',
    'public._apply_checkout_session(text, jsonb)',
    'public._apply_payment_intent(text, jsonb)',
    'public._apply_refund(jsonb, timestamptz)',
    'public._apply_charge_refunded(jsonb, timestamptz)',
    'public._apply_dispute(jsonb, text)',
    'public._apply_subscription(jsonb, text, timestamptz)',
    'public._apply_subscription_checkout(jsonb)',
    'public.process_stripe_event(text, text, timestamptz, text, text, jsonb, jsonb)',
    'public.claim_outbox_dispatches(text, integer)',
    'public.complete_outbox_dispatch(bigint, jsonb)',
    'public.release_outbox_dispatch(bigint, text)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
