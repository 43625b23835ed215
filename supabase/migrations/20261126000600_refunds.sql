-- Admin refunds (POST /v1/refunds) and the purchase lookup of a product switch.
--
-- A refund is made in three steps so that two requests can never refund the same cents:
--   1. reserve_refund locks the purchase row (select ... for update), checks what is still
--      refundable and records a refund row in status 'requested' before Stripe is called;
--      a concurrent request for the same payment waits for the lock and sees the reservation.
--   2. The caller creates the refund in Stripe with the idempotency key the reservation holds.
--   3. confirm_refund turns the reservation into the Stripe refund (id, status), or
--      release_refund removes it when Stripe refused.
-- The webhook worker upserts the same refund by its Stripe id (_upsert_refund, migration
-- 20261126000500); whichever side writes first, the admin's requested_by, reason and note stay.

alter table public.refunds add column if not exists request_key text;
create unique index if not exists refunds_request_key_idx
  on public.refunds (request_key) where request_key is not null;

-- What counts against the refundable amount: refunds Stripe accepted or may still complete,
-- and reservations whose Stripe call may still be running. A reservation older than the TTL
-- belongs to an invocation that died; it no longer blocks (Stripe's own amount_refunded,
-- which the caller passes in, still covers a refund that did happen).
create or replace function public._refund_counts(
  p_status text, p_updated_at timestamptz, p_ttl_seconds integer
) returns boolean
language sql stable
set search_path = public, pg_temp
as $$
  select p_status in ('pending', 'requires_action', 'succeeded')
      or (p_status = 'requested'
          and p_updated_at > now() - make_interval(secs => greatest(p_ttl_seconds, 1)))
$$;

create or replace function public._refund_view(p_refund refunds) returns jsonb
language sql immutable
set search_path = public, pg_temp
as $$
  select jsonb_build_object(
    'id', p_refund.id,
    'status', p_refund.status,
    'amount', p_refund.amount,
    'currency', p_refund.currency,
    'payment_intent', p_refund.payment_intent_id,
    'reason', p_refund.reason,
    'note', p_refund.note,
    'requested_by', p_refund.requested_by,
    'created_at', p_refund.created_at)
$$;

-- Step 1. Returns {"outcome": ...}:
--   "reserved": {reservation_id, amount, currency, idempotency_key, reason, note,
--               requested_by} -- call Stripe now, with exactly these values;
--   "replayed": {refund} -- this Idempotency-Key already produced a refund;
--   "refused":  {reason: not_found | disputed | not_paid | fully_refunded (no amount given
--               and nothing left) | exceeds_refundable | key_reused, refundable}.
-- The idempotency key is derived from the request: the client's key when it sent one, else
-- the payment, the amount (or "full") and what our table holds as refunded so far. A retry of
-- a request whose Stripe call never completed finds its reservation by that key and reuses
-- it, so Stripe sees the same key and replays instead of refunding twice.
create or replace function public.reserve_refund(
  p_payment_intent text,
  p_amount bigint,
  p_reason text,
  p_requested_by text,
  p_note text default null,
  p_client_key text default null,
  p_stripe_amount_refunded bigint default 0,
  p_stripe_disputed boolean default false,
  p_reservation_ttl_seconds integer default 600
) returns jsonb
language plpgsql
set search_path = public, pg_temp
set lock_timeout = '5s'
as $$
declare
  v_purchase purchases;
  v_existing refunds;
  v_confirmed bigint;
  v_refunded bigint;
  v_refundable bigint;
  v_amount bigint;
  v_key text;
  v_id text;
begin
  if p_amount is not null and p_amount <= 0 then
    raise exception using errcode = 'PY422', message = 'refund amount must be positive';
  end if;
  select * into v_purchase from purchases
  where payment_intent_id = p_payment_intent for update;
  if not found then
    return jsonb_build_object('outcome', 'refused', 'reason', 'not_found');
  end if;

  select coalesce(sum(amount), 0) into v_confirmed from refunds
  where payment_intent_id = p_payment_intent
    and status in ('pending', 'requires_action', 'succeeded');
  v_key := 'refund:' || p_payment_intent || ':' || case
    when p_client_key is not null then 'client:' || p_client_key
    else coalesce(p_amount::text, 'full') || ':' || v_confirmed::text
  end;

  select * into v_existing from refunds where request_key = v_key;
  if found then
    if p_amount is not null and v_existing.amount <> p_amount then
      return jsonb_build_object('outcome', 'refused', 'reason', 'key_reused');
    end if;
    if v_existing.status <> 'requested' then
      return jsonb_build_object('outcome', 'replayed', 'refund', public._refund_view(v_existing));
    end if;
    update refunds set updated_at = now() where id = v_existing.id;
    return jsonb_build_object(
      'outcome', 'reserved', 'reservation_id', v_existing.id, 'amount', v_existing.amount,
      'currency', v_existing.currency, 'idempotency_key', v_key, 'adopted', true,
      'reason', v_existing.reason, 'note', v_existing.note,
      'requested_by', v_existing.requested_by);
  end if;

  if v_purchase.status = 'disputed' or coalesce(p_stripe_disputed, false) then
    return jsonb_build_object('outcome', 'refused', 'reason', 'disputed');
  end if;
  if v_purchase.status not in ('paid', 'partially_refunded', 'refunded', 'switched') then
    return jsonb_build_object('outcome', 'refused', 'reason', 'not_paid');
  end if;

  select coalesce(sum(amount), 0) into v_refunded from refunds
  where payment_intent_id = p_payment_intent
    and public._refund_counts(status, updated_at, p_reservation_ttl_seconds);
  -- Our table may lag behind Stripe (events not yet processed, a Dashboard refund): trust
  -- whichever says more has been refunded.
  v_refunded := greatest(v_refunded, v_purchase.amount_refunded,
                         coalesce(p_stripe_amount_refunded, 0));
  v_refundable := case when v_purchase.status in ('refunded', 'switched') then 0
                       else greatest(v_purchase.amount - v_refunded, 0) end;
  -- "Refund the rest" of a payment with nothing left conflicts with its state (409); an
  -- explicit amount above what is left is an amount the payment cannot take (422).
  if p_amount is null and v_refundable = 0 then
    return jsonb_build_object('outcome', 'refused', 'reason', 'fully_refunded', 'refundable', 0);
  end if;
  v_amount := coalesce(p_amount, v_refundable);
  if v_amount > v_refundable then
    return jsonb_build_object('outcome', 'refused', 'reason', 'exceeds_refundable',
                              'refundable', v_refundable);
  end if;

  v_id := 'rfq_' || replace(gen_random_uuid()::text, '-', '');
  insert into refunds (id, payment_intent_id, member_id, amount, currency, status, reason, note,
                       requested_by, request_key)
  values (v_id, p_payment_intent, v_purchase.member_id, v_amount, v_purchase.currency,
          'requested', p_reason, p_note, p_requested_by, v_key);
  return jsonb_build_object(
    'outcome', 'reserved', 'reservation_id', v_id, 'amount', v_amount,
    'currency', v_purchase.currency, 'idempotency_key', v_key, 'adopted', false,
    'reason', p_reason, 'note', p_note, 'requested_by', p_requested_by);
end
$$;

-- Step 3a. The reservation becomes the Stripe refund. If the worker already recorded the
-- refund from its events, that row keeps its (event-dated) status and gains the admin's fields.
-- Logged once in payment_logs; a second confirmation of the same refund changes nothing.
create or replace function public.confirm_refund(
  p_reservation_id text,
  p_refund_id text,
  p_status text,
  p_amount bigint,
  p_currency text
) returns jsonb
language plpgsql
set search_path = public, pg_temp
set lock_timeout = '5s'
as $$
declare
  v_reservation refunds;
  v_refund refunds;
  v_pi text;
begin
  select payment_intent_id into v_pi from refunds where id = p_reservation_id;
  if v_pi is null then
    select * into v_refund from refunds where id = p_refund_id;
    if not found then
      raise exception using errcode = 'PY404', message = 'no such refund reservation';
    end if;
    return public._refund_view(v_refund);
  end if;
  -- Same lock order as reserve_refund: the purchase first, then its refunds.
  perform 1 from purchases where payment_intent_id = v_pi for update;
  select * into v_reservation from refunds
  where id = p_reservation_id and status = 'requested' for update;
  if not found then
    select * into v_refund from refunds where id = p_refund_id;
    return public._refund_view(v_refund);
  end if;

  select * into v_refund from refunds where id = p_refund_id for update;
  if found then
    delete from refunds where id = p_reservation_id;
    update refunds
    set requested_by = coalesce(requested_by, v_reservation.requested_by),
        note = coalesce(note, v_reservation.note),
        reason = coalesce(reason, v_reservation.reason),
        member_id = coalesce(member_id, v_reservation.member_id),
        request_key = coalesce(request_key, v_reservation.request_key),
        status = case when state_as_of is null then p_status else status end,
        updated_at = now()
    where id = p_refund_id
    returning * into v_refund;
  else
    update refunds
    set id = p_refund_id, status = p_status, amount = p_amount, currency = p_currency,
        updated_at = now()
    where id = p_reservation_id
    returning * into v_refund;
  end if;

  perform public._recompute_refunded(v_pi, 0);
  insert into payment_logs (event_type, user_id, amount, currency, status, stripe_object_id,
                            metadata)
  values ('refund.requested', v_refund.member_id, v_refund.amount, v_refund.currency,
          v_refund.status, v_refund.id,
          jsonb_strip_nulls(jsonb_build_object(
            'payment_intent', v_pi,
            'reason', v_refund.reason,
            'note', v_refund.note,
            'requested_by', v_refund.requested_by,
            'source', 'admin_api')));
  return public._refund_view(v_refund);
end
$$;

-- Step 3b. Stripe refused the refund: the reserved cents are free again; the attempt is logged.
create or replace function public.release_refund(p_reservation_id text, p_error_code text)
returns void
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_reservation refunds;
begin
  delete from refunds
  where id = p_reservation_id and status = 'requested'
  returning * into v_reservation;
  if not found then
    return;
  end if;
  insert into payment_logs (event_type, user_id, amount, currency, status, metadata)
  values ('refund.request_failed', v_reservation.member_id, v_reservation.amount,
          v_reservation.currency, 'failed',
          jsonb_strip_nulls(jsonb_build_object(
            'payment_intent', v_reservation.payment_intent_id,
            'reason', v_reservation.reason,
            'note', v_reservation.note,
            'requested_by', v_reservation.requested_by,
            'error', left(p_error_code, 100),
            'source', 'admin_api')));
end
$$;

-- The refund history of a payment, newest first; null when we know nothing of the payment.
-- Reservations still waiting for Stripe are not refunds yet and are left out.
create or replace function public.payment_refunds(p_payment_intent text) returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  select case
    when not exists (select 1 from purchases where payment_intent_id = p_payment_intent)
     and not exists (select 1 from refunds where payment_intent_id = p_payment_intent)
    then null
    else coalesce(
      (select jsonb_agg(public._refund_view(r) order by r.created_at desc, r.id desc)
       from refunds r
       where r.payment_intent_id = p_payment_intent and r.status <> 'requested'),
      '[]'::jsonb)
  end
$$;

-- The purchase a payment paid for, as the product switch needs it; null when unknown.
create or replace function public.purchase_by_payment_intent(p_payment_intent text)
returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  select jsonb_build_object(
    'payment_intent', p.payment_intent_id,
    'checkout_session_id', p.checkout_session_id,
    'member_id', p.member_id,
    'product', p.product,
    'amount', p.amount,
    'currency', p.currency,
    'amount_refunded', p.amount_refunded,
    'status', p.status)
  from purchases p
  where p.payment_intent_id = p_payment_intent
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public._refund_counts(text, timestamptz, integer)',
    'public._refund_view(public.refunds)',
    'public.reserve_refund(text, bigint, text, text, text, text, bigint, boolean, integer)',
    'public.confirm_refund(text, text, text, bigint, text)',
    'public.release_refund(text, text)',
    'public.payment_refunds(text)',
    'public.purchase_by_payment_intent(text)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
