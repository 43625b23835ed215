-- Refund requests are idempotent without an Idempotency-Key: the same admin asking for the same
-- refund (payment, amount or "the rest", reason) within a window gets the same refund back.
--
-- Replaces reserve_refund (20261126000600_refunds.sql, same parameters plus one optional):
-- its key for a request without a client key included the amount confirmed so far, so a retry
-- that arrived after the first refund was confirmed got a new key and refunded again. A request
-- is now matched by what it asks for, not by the state it left behind; an admin who does want
-- two equal refunds within the window sends an Idempotency-Key with each.
-- Also replaces confirm_refund (same file): when the worker recorded the refund from its events
-- first, the merged row keeps what the request asked for (request_spec) beside its key.

alter table public.refunds add column if not exists request_spec text;
create index if not exists refunds_request_match_idx
  on public.refunds (payment_intent_id, requested_by, created_at)
  where request_spec is not null;

drop function if exists public.reserve_refund(text, bigint, text, text, text, text, bigint,
                                              boolean, integer);

-- Step 1. Returns {"outcome": ...}:
--   "reserved": {reservation_id, amount, currency, idempotency_key, reason, note,
--               requested_by} -- call Stripe now, with exactly these values;
--   "replayed": {refund} -- this request already produced a refund;
--   "refused":  {reason: not_found | disputed | not_paid | fully_refunded (no amount given
--               and nothing left) | exceeds_refundable | key_reused, refundable}.
-- With a client key, the key is the request. Without one, the request is the same admin, the
-- same payment, the same amount (or "full") and reason within p_window_seconds: the newest such
-- refund that did not fail is replayed (or its reservation adopted, so Stripe sees the same
-- idempotency key and replays instead of refunding twice).
create or replace function public.reserve_refund(
  p_payment_intent text,
  p_amount bigint,
  p_reason text,
  p_requested_by text,
  p_note text default null,
  p_client_key text default null,
  p_stripe_amount_refunded bigint default 0,
  p_stripe_disputed boolean default false,
  p_reservation_ttl_seconds integer default 600,
  p_window_seconds integer default 600
) returns jsonb
language plpgsql
set search_path = public, pg_temp
set lock_timeout = '5s'
as $$
declare
  v_purchase purchases;
  v_existing refunds;
  v_refunded bigint;
  v_refundable bigint;
  v_amount bigint;
  v_spec text := coalesce(p_amount::text, 'full');
  v_key text;
  v_id text;
begin
  if p_amount is not null and p_amount <= 0 then
    raise exception using errcode = 'PY422', message = 'refund amount must be positive';
  end if;
  -- Serialises every request on this payment: the second of two identical requests sees the
  -- first one's reservation.
  select * into v_purchase from purchases
  where payment_intent_id = p_payment_intent
  order by id
  limit 1
  for update;
  if not found then
    return jsonb_build_object('outcome', 'refused', 'reason', 'not_found');
  end if;

  if p_client_key is not null then
    v_key := 'refund:' || p_payment_intent || ':client:' || p_client_key;
    select * into v_existing from refunds where request_key = v_key;
  else
    select * into v_existing from refunds
    where payment_intent_id = p_payment_intent
      and requested_by = p_requested_by
      and request_spec = v_spec
      and reason is not distinct from p_reason
      and status not in ('failed', 'canceled')
      and created_at > now() - make_interval(secs => greatest(p_window_seconds, 1))
    order by created_at desc
    limit 1;
  end if;
  if v_existing.id is not null then
    if p_amount is not null and v_existing.amount <> p_amount then
      return jsonb_build_object('outcome', 'refused', 'reason', 'key_reused');
    end if;
    if v_existing.status <> 'requested' then
      return jsonb_build_object('outcome', 'replayed', 'refund', public._refund_view(v_existing));
    end if;
    update refunds set updated_at = now() where id = v_existing.id;
    return jsonb_build_object(
      'outcome', 'reserved', 'reservation_id', v_existing.id, 'amount', v_existing.amount,
      'currency', v_existing.currency, 'idempotency_key', v_existing.request_key,
      'adopted', true, 'reason', v_existing.reason, 'note', v_existing.note,
      'requested_by', v_existing.requested_by);
  end if;

  if v_purchase.status in ('disputed', 'dispute_lost') or coalesce(p_stripe_disputed, false)
  then
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
  v_key := coalesce(v_key, 'refund:' || p_payment_intent || ':request:' || v_id);
  insert into refunds (id, payment_intent_id, member_id, amount, currency, status, reason, note,
                       requested_by, request_key, request_spec)
  values (v_id, p_payment_intent, v_purchase.member_id, v_amount, v_purchase.currency,
          'requested', p_reason, p_note, p_requested_by, v_key, v_spec);
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
        request_spec = coalesce(request_spec, v_reservation.request_spec),
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

revoke all on function public.reserve_refund(text, bigint, text, text, text, text, bigint,
                                             boolean, integer, integer)
  from public, anon, authenticated;
grant execute on function public.reserve_refund(text, bigint, text, text, text, text, bigint,
                                                boolean, integer, integer) to service_role;
