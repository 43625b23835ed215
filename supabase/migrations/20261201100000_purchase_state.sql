-- Purchase state as a function of every Stripe event, whatever order they arrive in, and the
-- money invariants enforced where money moves (docs/reliability.md, "Invariants").
--
-- * A purchase's status is derived, in one function (_refresh_purchase), from its payment
--   lifecycle (payment_status: open -> processing -> paid | failed | expired) and from what
--   Stripe says of its payment intent: refunds, the charge's own amount_refunded, disputes. A
--   refund, a charge.refunded or a dispute that arrives before the checkout.session.completed
--   that links the payment intent is kept in its own table and counted once the link exists.
-- * One paid purchase per member and track, one live subscription per member: when a payment
--   succeeds for something the member already holds, the purchase is marked duplicate, an
--   automatic full refund (or the cancellation of the duplicate subscription with a refund) is
--   queued in the outbox, and nothing is dispatched to Make.com for it.
-- * Fulfilment (the Make.com add_project dispatch and, for a product switch, the refund of the
--   original) is queued once per purchase (fulfilled_at), only while the purchase is held: never
--   for an order already fully refunded or disputed when its completion arrives.
-- * Events naming a member who has since been erased map to the pseudonym, never the real id.
-- * Events the worker refuses (malformed, another Stripe mode) are recorded once as refused.
--
-- Replaces, from 20261126000500_webhook_events.sql: _apply_checkout_session,
-- _apply_payment_intent, _apply_refund, _apply_charge_refunded, _apply_dispute,
-- _apply_subscription, _recompute_refunded (now a wrapper of _refresh_purchase, for
-- confirm_refund), process_stripe_event and complete_outbox_dispatch; from
-- 20261126000400_checkout.sql: member_owns_product and record_checkout_session (same
-- parameters plus optional ones, so callers that omit them keep working).
-- _enqueue_add_project and _on_purchase_paid are dropped (their work moved to
-- _refresh_purchase and _set_payment_status), and _purchase_status_after_refunds (replaced by
-- _purchase_status). customer_for_member, save_customer and member_has_live_subscription are no
-- longer called by this release; they stay for one release so a deployment rolling out keeps
-- the previous code working.

-- --- schema --------------------------------------------------------------------------------

alter table public.purchases
  add column if not exists payment_status text,
  add column if not exists mode text not null default 'payment',
  add column if not exists subscription_id text,
  -- A subscription checkout's first invoice: what its payment (and a refund of it) is.
  add column if not exists invoice_id text,
  add column if not exists checkout_url text,
  add column if not exists expires_at timestamptz,
  add column if not exists duplicate boolean not null default false,
  add column if not exists switched_at timestamptz,
  add column if not exists fulfilled_at timestamptz;

update public.purchases
set payment_status = case when status in ('open', 'processing', 'failed', 'expired')
                          then status else 'paid' end
where payment_status is null;
update public.purchases set switched_at = updated_at
where status = 'switched' and switched_at is null;
-- Purchases paid before this migration were fulfilled by the code of their time.
update public.purchases set fulfilled_at = updated_at
where payment_status = 'paid' and fulfilled_at is null;

alter table public.purchases alter column payment_status set default 'open';
alter table public.purchases alter column payment_status set not null;
alter table public.purchases drop constraint if exists purchases_payment_status_check;
alter table public.purchases add constraint purchases_payment_status_check
  check (payment_status in ('open', 'processing', 'paid', 'failed', 'expired'));
alter table public.purchases drop constraint if exists purchases_mode_check;
alter table public.purchases add constraint purchases_mode_check
  check (mode in ('payment', 'subscription'));
-- 'dispute_lost': the bank took the money back for good; the member no longer holds the track.
alter table public.purchases drop constraint if exists purchases_status_check;
alter table public.purchases add constraint purchases_status_check
  check (status in ('open', 'processing', 'paid', 'failed', 'expired', 'partially_refunded',
                    'refunded', 'disputed', 'dispute_lost', 'switched'));

create index if not exists purchases_member_product_idx
  on public.purchases (member_id, product) where member_id is not null;
create index if not exists purchases_switch_from_idx
  on public.purchases (switch_from) where switch_from is not null;
create index if not exists purchases_subscription_idx
  on public.purchases (subscription_id) where subscription_id is not null;

-- What Stripe said last about a charge (charge.refunded carries the charge's cumulative
-- amount_refunded without listing its refunds): counted even before the purchase is linked.
create table if not exists public.charges (
  id                text primary key,
  payment_intent_id text,
  amount            bigint,
  amount_refunded   bigint not null default 0,
  currency          text,
  state_as_of       timestamptz not null,
  updated_at        timestamptz not null default now()
);
create index if not exists charges_payment_intent_idx on public.charges (payment_intent_id);
create index if not exists charges_updated_at_idx on public.charges (updated_at);

-- Every dispute Stripe told us about, by its id; the purchase's dispute state is its newest.
create table if not exists public.disputes (
  id                text primary key,
  payment_intent_id text,
  charge_id         text,
  amount            bigint,
  currency          text,
  status            text not null,
  reason            text,
  evidence_due_by   timestamptz,
  stripe_created    timestamptz,
  state_as_of       timestamptz not null,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);
create index if not exists disputes_payment_intent_idx on public.disputes (payment_intent_id);
create index if not exists disputes_updated_at_idx on public.disputes (updated_at);

-- Who a dispatch concerns: erasure waits while one is pending (money or fulfilment owed).
alter table public.outbox add column if not exists member_id text;
update public.outbox set member_id = payload ->> 'member_id'
where member_id is null and payload ? 'member_id';
create index if not exists outbox_member_pending_idx on public.outbox (member_id)
  where status = 'pending';
create index if not exists outbox_pending_created_idx on public.outbox (created_at)
  where status = 'pending';

-- Refused: the worker will never apply it (malformed for its type, another Stripe mode).
alter table public.processed_events add column if not exists detail text;
alter table public.processed_events drop constraint if exists processed_events_outcome_check;
alter table public.processed_events add constraint processed_events_outcome_check
  check (outcome in ('applied', 'ignored', 'stale', 'refused'));

do $$
declare
  t text;
begin
  foreach t in array array['charges', 'disputes'] loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on table public.%I from public, anon, authenticated', t);
    execute format('grant all on table public.%I to service_role', t);
  end loop;
end
$$;

-- --- members -------------------------------------------------------------------------------

-- The id to store for a member named by a Stripe object: the pseudonym when the member was
-- erased after the object was created (Stripe keeps metadata.member_id for ever), else the id.
-- A member who comes back after an erasure and buys again is named by their new objects.
create or replace function public._member_ref(p_member_id text, p_object_created timestamptz)
returns text
language sql stable
set search_path = public, pg_temp
as $$
  select case
    when p_member_id is null or p_member_id like 'erased:%' then p_member_id
    when exists (select 1 from erasures e
                 where e.pseudonym = public.member_pseudonym(p_member_id)
                   and (p_object_created is null or p_object_created <= e.last_erased_at))
      then public.member_pseudonym(p_member_id)
    else p_member_id
  end
$$;

-- Remember a member's Stripe customer once; never for an erased member.
create or replace function public._remember_customer(p_member_id text, p_customer text)
returns void
language sql
set search_path = public, pg_temp
as $$
  insert into customers (member_id, stripe_customer_id)
  select p_member_id, p_customer
  where p_member_id is not null and p_customer is not null and p_member_id not like 'erased:%'
  on conflict do nothing
$$;

-- --- derived state -------------------------------------------------------------------------

-- A dispute's place in its life; a terminal status is never replaced by an earlier one.
create or replace function public._dispute_status_rank(p_status text) returns integer
language sql immutable
set search_path = public, pg_temp
as $$
  select case
    when p_status in ('won', 'lost', 'warning_closed', 'prevented') then 3
    when p_status in ('under_review', 'warning_under_review') then 2
    else 1
  end
$$;

-- 'open' while a dispute of the payment is undecided, 'lost' once a bank decided one for the
-- cardholder (a dispute won elsewhere does not give that money back), null when there is none
-- or every one was won. Decided from all of them, so their order does not matter.
create or replace function public._dispute_state(p_payment_intent text) returns text
language sql stable
set search_path = public, pg_temp
as $$
  select case
    when bool_or(public._dispute_status_rank(status) < 3) then 'open'
    when bool_or(status = 'lost') then 'lost'
  end
  from disputes
  where payment_intent_id = p_payment_intent
$$;

-- What has been refunded of a payment: our refunds that Stripe accepted or may still complete,
-- or the charge's own figure when that says more (refunds we never saw, such as one made in the
-- Dashboard whose events were lost). The charge's figure is as of its event: a refund we saw
-- fail at or after that moment no longer counts in it (Stripe sends no new charge.refunded
-- when a refund fails).
create or replace function public._refunded_amount(p_payment_intent text) returns bigint
language sql stable
set search_path = public, pg_temp
as $$
  select greatest(
    coalesce((select sum(amount) from refunds
              where payment_intent_id = p_payment_intent
                and status in ('pending', 'requires_action', 'succeeded')), 0),
    coalesce((select max(c.amount_refunded - coalesce(
                (select sum(r.amount) from refunds r
                 where r.payment_intent_id = c.payment_intent_id
                   and r.status in ('failed', 'canceled')
                   and r.state_as_of >= c.state_as_of), 0))
              from charges c
              where c.payment_intent_id = p_payment_intent), 0))::bigint
$$;

-- The one rule for a purchase's status.
create or replace function public._purchase_status(
  p_payment_status text, p_switched boolean, p_amount bigint, p_refunded bigint,
  p_dispute text
) returns text
language sql immutable
set search_path = public, pg_temp
as $$
  select case
    when p_payment_status <> 'paid' then p_payment_status
    when p_dispute = 'open' then 'disputed'
    when p_dispute = 'lost' then 'dispute_lost'
    when p_switched then 'switched'
    when p_refunded >= p_amount and p_amount > 0 then 'refunded'
    when p_refunded > 0 then 'partially_refunded'
    else 'paid'
  end
$$;

create or replace function public._enqueue(
  p_kind text, p_dedupe_key text, p_event_id text, p_member_id text, p_payload jsonb
) returns void
language sql
set search_path = public, pg_temp
as $$
  insert into outbox (kind, dedupe_key, event_id, member_id, payload)
  values (p_kind, p_dedupe_key, p_event_id, p_member_id, p_payload)
  on conflict (dedupe_key) do nothing
$$;

-- Recompute a purchase from everything we know, and queue its fulfilment once it is held.
-- Called after every change to a purchase or to what Stripe said of its payment.
create or replace function public._refresh_purchase(p_purchase_id bigint, p_event_id text)
returns purchases
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row purchases;
  v_refunded bigint := 0;
  v_dispute text;
  v_status text;
begin
  select * into v_row from purchases where id = p_purchase_id for update;
  if not found then
    return null;
  end if;
  if v_row.payment_intent_id is not null then
    v_refunded := public._refunded_amount(v_row.payment_intent_id);
    v_dispute := public._dispute_state(v_row.payment_intent_id);
    -- Refunds and disputes recorded before the purchase was linked learn whose they are.
    update refunds set member_id = v_row.member_id
    where payment_intent_id = v_row.payment_intent_id and member_id is null
      and v_row.member_id is not null;
  end if;
  v_status := public._purchase_status(v_row.payment_status, v_row.switched_at is not null,
                                      v_row.amount, v_refunded, v_dispute);
  if v_status is distinct from v_row.status or v_refunded is distinct from v_row.amount_refunded
  then
    update purchases set status = v_status, amount_refunded = v_refunded, updated_at = now()
    where id = v_row.id
    returning * into v_row;
  end if;

  if v_row.payment_status = 'paid' and not v_row.duplicate and v_row.fulfilled_at is null
     and v_row.status in ('paid', 'partially_refunded') then
    update purchases set fulfilled_at = now() where id = v_row.id returning * into v_row;
    perform public._enqueue(
      'add_project', 'add_project:' || v_row.checkout_session_id, p_event_id, v_row.member_id,
      jsonb_build_object(
        'member_id', v_row.member_id,
        'product', v_row.product,
        'mode', v_row.mode,
        'amount', v_row.amount,
        'currency', v_row.currency,
        'checkout_session_id', v_row.checkout_session_id,
        'payment_intent', v_row.payment_intent_id,
        'subscription', v_row.subscription_id));
    if v_row.switch_from is not null then
      perform public._enqueue(
        'switch_refund', 'switch_refund:' || v_row.switch_from, p_event_id, v_row.member_id,
        jsonb_build_object(
          'payment_intent', v_row.switch_from,
          'product', v_row.product,
          'member_id', v_row.member_id,
          'checkout_session_id', v_row.checkout_session_id));
    end if;
  end if;
  return v_row;
end
$$;

-- Kept for confirm_refund (20261126000600): refresh the purchases a payment paid for.
create or replace function public._recompute_refunded(p_payment_intent text, p_floor bigint)
returns purchases
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
  v_row purchases;
begin
  for v_id in select id from purchases where payment_intent_id = p_payment_intent order by id
  loop
    v_row := public._refresh_purchase(v_id, null);
  end loop;
  return v_row;
end
$$;

-- --- one paid purchase per track ------------------------------------------------------------

-- Whether the member already holds this one-time track (a paid purchase not refunded, lost or
-- switched away; a payment still settling counts when p_include_processing). A member who was
-- erased still holds what they paid for: their purchases carry the pseudonym, which their id
-- gives again.
create or replace function public._holds_track(
  p_member_id text, p_product text, p_except bigint, p_include_processing boolean
) returns boolean
language sql stable
set search_path = public, pg_temp
as $$
  select exists (
    select 1 from purchases o
    where o.member_id in (p_member_id, public.member_pseudonym(p_member_id))
      and o.product = p_product and o.mode = 'payment'
      and o.id is distinct from p_except and not o.duplicate
      and (o.status in ('paid', 'partially_refunded', 'disputed')
           or (p_include_processing and o.status = 'processing'))
  )
$$;

-- Whether the member holds a live subscription other than p_subscription: one our tables know
-- as live, or one bought through our checkout whose end we have not heard of.
create or replace function public._holds_subscription(
  p_member_id text, p_except bigint, p_subscription text
) returns boolean
language sql stable
set search_path = public, pg_temp
as $$
  select exists (
    select 1 from subscriptions s
    where s.member_id in (p_member_id, public.member_pseudonym(p_member_id))
      and s.id is distinct from p_subscription
      and s.status in ('active', 'trialing', 'past_due', 'paused')
  ) or exists (
    select 1 from purchases o
    where o.member_id in (p_member_id, public.member_pseudonym(p_member_id))
      and o.mode = 'subscription' and o.payment_status = 'paid'
      and not o.duplicate and o.id is distinct from p_except
      and o.subscription_id is distinct from p_subscription
      and not exists (select 1 from subscriptions s
                      where s.id = o.subscription_id
                        and s.status in ('canceled', 'incomplete_expired'))
  )
$$;

-- Whether a purchase that was just paid duplicates one the member already holds. Callers hold
-- the member's lock, so two payments racing for one track are judged one after the other.
create or replace function public._is_duplicate(p_row purchases, p_allow_repeat boolean)
returns boolean
language sql stable
set search_path = public, pg_temp
as $$
  select case
    when p_row.member_id is null then false
    when p_row.mode = 'subscription' then
      public._holds_subscription(p_row.member_id, p_row.id, p_row.subscription_id)
    -- A second switch paid from the same original: the member asked for one switch.
    when p_row.switch_from is not null and exists (
      select 1 from purchases o
      where o.switch_from = p_row.switch_from and o.id <> p_row.id
        and o.payment_status = 'paid' and not o.duplicate) then true
    when coalesce(p_allow_repeat, false) then false
    else public._holds_track(p_row.member_id, p_row.product, p_row.id, false)
  end
$$;

-- Serialise the judgement of a member's payments ("is this one a duplicate?"). Always taken
-- before any purchase row lock of that member, so two workers never wait on each other in
-- opposite orders; re-entrant within a transaction.
create or replace function public._lock_member(p_member_id text) returns void
language sql
set search_path = public, pg_temp
as $$
  select pg_advisory_xact_lock(hashtextextended('member:' || p_member_id, 0))
  where p_member_id is not null
$$;

-- Move a purchase's payment lifecycle forward (never backwards: an older or repeated event
-- changes nothing); on the move to paid, judge it a duplicate or not, then refresh it.
create or replace function public._set_payment_status(
  p_purchase_id bigint, p_target text, p_event_id text, p_allow_repeat boolean
) returns purchases
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row purchases;
begin
  select * into v_row from purchases where id = p_purchase_id for update;
  if p_target is not null and public._purchase_may_become(v_row.payment_status, p_target) then
    -- Usually held already: the event's caller locks the member before the row. Re-entrant.
    perform public._lock_member(v_row.member_id);
    update purchases set payment_status = p_target, updated_at = now()
    where id = v_row.id returning * into v_row;
    if p_target = 'failed' and v_row.mode = 'subscription' and v_row.subscription_id is not null
    then
      -- Its first payment failed: the member must start again, and a subscription left
      -- behind would keep trying to charge them beside the one they buy next.
      perform public._enqueue(
        'cancel_unpaid_subscription', 'cancel_unpaid_subscription:' || v_row.subscription_id,
        p_event_id, v_row.member_id,
        jsonb_build_object('subscription', v_row.subscription_id,
                           'checkout_session_id', v_row.checkout_session_id,
                           'member_id', v_row.member_id));
    end if;
    if p_target = 'paid' and public._is_duplicate(v_row, p_allow_repeat) then
      update purchases set duplicate = true where id = v_row.id returning * into v_row;
      if v_row.mode = 'subscription' then
        perform public._enqueue(
          'duplicate_subscription', 'duplicate_subscription:' || v_row.checkout_session_id,
          p_event_id, v_row.member_id,
          jsonb_build_object(
            'subscription', v_row.subscription_id,
            'invoice', v_row.invoice_id,
            'checkout_session_id', v_row.checkout_session_id,
            'member_id', v_row.member_id,
            'product', v_row.product,
            'amount', v_row.amount,
            'currency', v_row.currency));
      else
        perform public._enqueue(
          'duplicate_refund', 'duplicate_refund:' || v_row.checkout_session_id,
          p_event_id, v_row.member_id,
          jsonb_build_object(
            'payment_intent', v_row.payment_intent_id,
            'checkout_session_id', v_row.checkout_session_id,
            'member_id', v_row.member_id,
            'product', v_row.product,
            'amount', v_row.amount,
            'currency', v_row.currency));
      end if;
      insert into payment_logs (event_type, user_id, amount, currency, status, stripe_object_id,
                                metadata)
      values ('purchase.duplicate_paid', v_row.member_id, v_row.amount, v_row.currency,
              'refund_due', v_row.checkout_session_id,
              jsonb_strip_nulls(jsonb_build_object(
                'product', v_row.product, 'mode', v_row.mode,
                'payment_intent', v_row.payment_intent_id,
                'subscription', v_row.subscription_id,
                'switch_from', v_row.switch_from)));
    end if;
  end if;
  return public._refresh_purchase(v_row.id, p_event_id);
end
$$;

-- --- event effects -------------------------------------------------------------------------

-- The refund and dispute effects take the event id now (they may queue fulfilment).
drop function if exists public._apply_refund(jsonb, timestamptz);
drop function if exists public._apply_charge_refunded(jsonb, timestamptz);
drop function if exists public._apply_dispute(jsonb, text);
-- Superseded by _purchase_status.
drop function if exists public._purchase_status_after_refunds(text, bigint, bigint);

-- checkout.session.*: the purchase keyed by its Checkout Session (one-time or subscription).
create or replace function public._apply_checkout_session(p_event_id text, p_data jsonb)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_session text := p_data ->> 'checkout_session_id';
  v_member text := public._member_ref(p_data ->> 'member_id',
                                      (p_data ->> 'object_created')::timestamptz);
  v_mode text := coalesce(p_data ->> 'mode', 'payment');
  v_row purchases;
  v_was_duplicate boolean;
begin
  perform public._remember_customer(v_member, p_data ->> 'customer');
  if p_data ->> 'target_status' = 'paid' then
    perform public._lock_member(coalesce(
      (select member_id from purchases where checkout_session_id = v_session), v_member));
  end if;
  select * into v_row from purchases where checkout_session_id = v_session for update;
  if not found then
    if p_data ->> 'product' is null then
      -- Not a session our checkout created (no product): audit it, change nothing.
      return jsonb_build_object('outcome', 'applied', 'member_id', v_member,
                                'attributed', false);
    end if;
    insert into purchases (checkout_session_id, payment_intent_id, member_id, product, mode,
                           subscription_id, amount, currency, status, payment_status,
                           switch_from)
    values (v_session, p_data ->> 'payment_intent', v_member, p_data ->> 'product', v_mode,
            p_data ->> 'subscription', coalesce((p_data ->> 'amount')::bigint, 0),
            coalesce(p_data ->> 'currency', 'usd'), 'open', 'open', p_data ->> 'switch_from')
    on conflict (checkout_session_id) do nothing
    returning * into v_row;
    if not found then
      -- Created by a concurrent transaction since our select: take its row and go on.
      select * into v_row from purchases where checkout_session_id = v_session for update;
    end if;
  end if;

  update purchases
  set payment_intent_id = coalesce(payment_intent_id, p_data ->> 'payment_intent'),
      subscription_id = coalesce(subscription_id, p_data ->> 'subscription'),
      invoice_id = coalesce(invoice_id, p_data ->> 'invoice'),
      member_id = coalesce(member_id, v_member),
      switch_from = coalesce(switch_from, p_data ->> 'switch_from'),
      amount = case when payment_status in ('open', 'processing')
                    then coalesce((p_data ->> 'amount')::bigint, amount) else amount end,
      updated_at = now()
  where id = v_row.id
  returning * into v_row;
  v_was_duplicate := v_row.duplicate;

  v_row := public._set_payment_status(v_row.id, p_data ->> 'target_status', p_event_id,
                                      (p_data ->> 'allow_repeat')::boolean);
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status,
                            'duplicate', v_row.duplicate and not v_was_duplicate,
                            'product', v_row.product, 'mode', v_row.mode);
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
  v_was_duplicate boolean;
begin
  if p_data ->> 'target_status' = 'paid' then
    perform public._lock_member(
      (select member_id from purchases where payment_intent_id = p_data ->> 'payment_intent'));
  end if;
  select * into v_row from purchases
  where payment_intent_id = p_data ->> 'payment_intent' for update;
  if not found then
    return jsonb_build_object('outcome', 'applied', 'member_id',
                              public._member_ref(p_data ->> 'member_id',
                                                 (p_data ->> 'object_created')::timestamptz));
  end if;
  v_was_duplicate := v_row.duplicate;
  v_row := public._set_payment_status(v_row.id, p_data ->> 'target_status', p_event_id,
                                      (p_data ->> 'allow_repeat')::boolean);
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status,
                            'duplicate', v_row.duplicate and not v_was_duplicate,
                            'product', v_row.product, 'mode', v_row.mode);
end
$$;

-- Refresh whatever purchase a payment intent paid for; its member, for the log.
create or replace function public._refresh_payment(p_payment_intent text, p_event_id text)
returns purchases
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
  v_row purchases;
begin
  for v_id in select id from purchases where payment_intent_id = p_payment_intent order by id
  loop
    v_row := public._refresh_purchase(v_id, p_event_id);
  end loop;
  return v_row;
end
$$;

-- refund.created / updated / failed, charge.refund.updated.
create or replace function public._apply_refund(
  p_event_id text, p_data jsonb, p_event_created timestamptz
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_refund jsonb := p_data -> 'refund';
  v_row purchases;
begin
  v_refund := v_refund || jsonb_build_object(
    'member_id', public._member_ref(v_refund ->> 'member_id',
                                    (p_data ->> 'object_created')::timestamptz));
  perform public._upsert_refund(v_refund, p_event_created);
  if v_refund ->> 'payment_intent' is not null then
    v_row := public._refresh_payment(v_refund ->> 'payment_intent', p_event_id);
  end if;
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status,
                            'amount_refunded', v_row.amount_refunded);
end
$$;

-- charge.refunded: the refunds the charge lists (only with expand[]=refunds, which events never
-- have) and the charge's cumulative amount_refunded as of this event.
create or replace function public._apply_charge_refunded(
  p_event_id text, p_data jsonb, p_event_created timestamptz
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_refund jsonb;
  v_row purchases;
begin
  if p_data ->> 'payment_intent' is null then
    return jsonb_build_object('outcome', 'applied', 'member_id', null);
  end if;
  if jsonb_typeof(p_data -> 'refunds') = 'array' then
    for v_refund in select * from jsonb_array_elements(p_data -> 'refunds') loop
      perform public._upsert_refund(v_refund, p_event_created);
    end loop;
  end if;
  if p_data ->> 'charge' is not null then
    insert into charges as c (id, payment_intent_id, amount, amount_refunded, currency,
                              state_as_of)
    values (p_data ->> 'charge', p_data ->> 'payment_intent', (p_data ->> 'amount')::bigint,
            coalesce((p_data ->> 'amount_refunded')::bigint, 0), p_data ->> 'currency',
            p_event_created)
    on conflict (id) do update
    set amount_refunded = case
          when excluded.state_as_of > c.state_as_of then excluded.amount_refunded
          when excluded.state_as_of = c.state_as_of
            then greatest(excluded.amount_refunded, c.amount_refunded)
          else c.amount_refunded
        end,
        amount = coalesce(c.amount, excluded.amount),
        state_as_of = greatest(c.state_as_of, excluded.state_as_of),
        updated_at = now();
  end if;
  v_row := public._refresh_payment(p_data ->> 'payment_intent', p_event_id);
  return jsonb_build_object('outcome', 'applied', 'member_id', v_row.member_id,
                            'purchase_status', v_row.status,
                            'amount_refunded', v_row.amount_refunded);
end
$$;

-- charge.dispute.*: the dispute as of this event (a terminal status is never undone by an
-- older event), then the purchase.
create or replace function public._apply_dispute(
  p_event_id text, p_data jsonb, p_event_created timestamptz
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row purchases;
begin
  if p_data ->> 'dispute_id' is not null then
    insert into disputes as d (id, payment_intent_id, charge_id, amount, currency, status,
                               reason, evidence_due_by, stripe_created, state_as_of)
    values (p_data ->> 'dispute_id', p_data ->> 'payment_intent', p_data ->> 'charge',
            (p_data ->> 'amount')::bigint, p_data ->> 'currency', p_data ->> 'status',
            p_data ->> 'reason', (p_data ->> 'evidence_due_by')::timestamptz,
            (p_data ->> 'object_created')::timestamptz, p_event_created)
    on conflict (id) do update
    set status = case
          when public._dispute_status_rank(d.status) = 3
               and public._dispute_status_rank(excluded.status) < 3 then d.status
          when excluded.state_as_of > d.state_as_of
            or (excluded.state_as_of = d.state_as_of
                and public._dispute_status_rank(excluded.status)
                    >= public._dispute_status_rank(d.status))
            or (public._dispute_status_rank(excluded.status) = 3
                and public._dispute_status_rank(d.status) < 3)
          then excluded.status
          else d.status
        end,
        payment_intent_id = coalesce(d.payment_intent_id, excluded.payment_intent_id),
        charge_id = coalesce(d.charge_id, excluded.charge_id),
        amount = coalesce(excluded.amount, d.amount),
        reason = coalesce(excluded.reason, d.reason),
        evidence_due_by = coalesce(excluded.evidence_due_by, d.evidence_due_by),
        stripe_created = coalesce(d.stripe_created, excluded.stripe_created),
        state_as_of = greatest(d.state_as_of, excluded.state_as_of),
        updated_at = now();
  end if;
  if p_data ->> 'payment_intent' is not null then
    v_row := public._refresh_payment(p_data ->> 'payment_intent', p_event_id);
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
  v_member := coalesce(
    public._member_ref(p_data ->> 'member_id', (p_data ->> 'object_created')::timestamptz),
    v_existing.member_id,
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
      stripe_customer_id = case when s.stripe_customer_id like 'erased:%'
                                then s.stripe_customer_id else excluded.stripe_customer_id end,
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
  perform public._remember_customer(v_member, v_customer);
  return jsonb_build_object('outcome', 'applied', 'member_id', v_member,
                            'subscription_status', p_data ->> 'status');
end
$$;

-- --- the one call per event ----------------------------------------------------------------

-- Returns {"outcome": "applied"|"stale"|"ignored"|"refused"|"duplicate", "member_id", ...}.
-- p_log holds the payment_logs values the event itself carries (amount, currency, status,
-- user_id, customer, metadata); the user falls back to the purchase's or the customer
-- mapping's member, and is the pseudonym for a member erased since.
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
  insert into processed_events (event_id, event_type, object_id, event_created, outcome,
                                detail)
  values (p_event_id, p_event_type, p_object_id, p_event_created,
          case when p_action = 'refuse' then 'refused' else 'applied' end,
          case when p_action = 'refuse' then left(p_data ->> 'reason', 200) end)
  on conflict (event_id) do nothing
  returning event_id into v_claimed;
  if v_claimed is null then
    -- A duplicate may still have a dispatch left over from a failed earlier attempt.
    return jsonb_build_object('outcome', 'duplicate', 'event_id', p_event_id,
                              'pending_outbox', public._has_pending_outbox(p_event_id));
  end if;
  if p_action = 'refuse' then
    return jsonb_build_object('outcome', 'refused', 'event_id', p_event_id,
                              'pending_outbox', false);
  end if;

  v_result := case p_action
    when 'checkout_session' then public._apply_checkout_session(p_event_id, p_data)
    when 'subscription_checkout' then public._apply_subscription_checkout(p_data)
    when 'payment_intent' then public._apply_payment_intent(p_event_id, p_data)
    when 'refund' then public._apply_refund(p_event_id, p_data, p_event_created)
    when 'charge_refunded' then public._apply_charge_refunded(p_event_id, p_data,
                                                              p_event_created)
    when 'dispute' then public._apply_dispute(p_event_id, p_data, p_event_created)
    when 'subscription' then public._apply_subscription(p_data, p_event_type, p_event_created)
    when 'invoice' then public._apply_invoice(p_event_id, p_event_type, p_data,
                                              p_event_created)
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
      public._member_ref(nullif(p_log ->> 'user_id', ''),
                         (p_data ->> 'object_created')::timestamptz),
      v_result ->> 'member_id',
      (select member_id from customers where stripe_customer_id = p_log ->> 'customer'));
    insert into payment_logs (event_type, user_id, amount, currency, status, stripe_event_id,
                              stripe_object_id, metadata)
    values (p_event_type, v_user_id, (p_log ->> 'amount')::bigint, p_log ->> 'currency',
            p_log ->> 'status', p_event_id, p_object_id,
            coalesce(p_log -> 'metadata', '{}'::jsonb)
              || case when v_outcome = 'stale' then '{"stale": true}'::jsonb
                      else '{}'::jsonb end
              || case when (v_result ->> 'product') is not null
                       and not coalesce(p_log -> 'metadata', '{}'::jsonb) ? 'product'
                      then jsonb_build_object('product', v_result ->> 'product')
                      else '{}'::jsonb end)
    on conflict (stripe_event_id) do nothing;
  end if;
  return v_result || jsonb_build_object('event_id', p_event_id, 'user_id', v_user_id,
                                        'pending_outbox', public._has_pending_outbox(p_event_id));
end
$$;

-- --- dispatches ----------------------------------------------------------------------------

-- A side effect was performed: never send it again. A refund the service issued on its own
-- (switch, duplicate) is recorded as a refund, with who and why, as the admin API would.
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
  v_note text;
  v_reason text;
  v_by text;
  v_purchase_id bigint;
begin
  update outbox
  set status = 'sent', sent_at = now(), locked_until = null, last_error = null
  where id = p_id and status = 'pending'
  returning * into v_row;
  if not found then
    return jsonb_build_object('completed', false);
  end if;
  if v_row.kind not in ('switch_refund', 'duplicate_refund', 'duplicate_subscription') then
    return jsonb_build_object('completed', true, 'kind', v_row.kind);
  end if;

  v_pi := coalesce(p_result ->> 'payment_intent', v_row.payload ->> 'payment_intent');
  if v_row.kind = 'switch_refund' then
    v_reason := 'requested_by_customer';
    v_note := 'product switch to ' || (v_row.payload ->> 'product');
    v_by := 'product_switch';
  else
    v_reason := 'duplicate';
    v_note := 'automatic refund: ' || (v_row.payload ->> 'product') || ' already held';
    v_by := 'duplicate_purchase';
  end if;
  if v_row.kind = 'duplicate_subscription' and v_pi is not null then
    -- A subscription's first payment is known only once its invoice was paid.
    update purchases set payment_intent_id = v_pi
    where checkout_session_id = v_row.payload ->> 'checkout_session_id'
      and payment_intent_id is null;
  end if;
  if p_result ->> 'refund_id' is not null and v_pi is not null then
    insert into refunds (id, payment_intent_id, member_id, amount, currency, status, reason,
                         note, requested_by)
    values (p_result ->> 'refund_id', v_pi, v_row.member_id,
            (p_result ->> 'amount')::bigint, p_result ->> 'currency',
            p_result ->> 'status', v_reason, v_note, v_by)
    on conflict (id) do update
    set note = coalesce(refunds.note, excluded.note),
        requested_by = coalesce(refunds.requested_by, excluded.requested_by),
        reason = coalesce(refunds.reason, excluded.reason),
        member_id = coalesce(refunds.member_id, excluded.member_id),
        updated_at = now();
  end if;
  if v_row.kind = 'switch_refund' then
    update purchases set switched_at = coalesce(switched_at, now())
    where payment_intent_id = v_pi and payment_status = 'paid';
  end if;
  if v_pi is not null then
    perform public._refresh_payment(v_pi, v_row.event_id);
  end if;
  return jsonb_build_object('completed', true, 'kind', v_row.kind);
end
$$;

-- --- checkout ------------------------------------------------------------------------------

-- Whether the member already owns this one-time product (processing payments included: they
-- may still succeed). Kept for callers of 20261126000400; checkout_context answers more.
create or replace function public.member_owns_product(p_member_id text, p_product text)
returns boolean
language sql stable
set search_path = public, pg_temp
as $$ select public._holds_track(p_member_id, p_product, null, true) $$;

-- Everything checkout needs to know before it calls Stripe, in one round trip:
--   owned             the member holds this one-time track (or a payment for it is settling);
--   live_subscription the member holds a live subscription (subscription mode);
--   open_session      a session of ours for the same product (and switch) still open and far
--                     from expiry: returned again instead of a second one;
--   stale_sessions    other open sessions that a new one would compete with (another plan, a
--                     switch of the same original to another track): to expire first;
--   switch_paid       a switch away from p_switch_from was already paid (one switch each);
--   customer_id       the member's Stripe customer, when we know it.
create or replace function public.checkout_context(
  p_member_id text,
  p_product text,
  p_mode text default 'payment',
  p_switch_from text default null,
  p_reuse_margin_seconds integer default 600
) returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  select jsonb_build_object(
    'owned', p_mode = 'payment' and public._holds_track(p_member_id, p_product, null, true),
    'live_subscription', p_mode = 'subscription'
                         and public._holds_subscription(p_member_id, null, null),
    'open_session', (
      select jsonb_build_object('id', p.checkout_session_id, 'url', p.checkout_url)
      from purchases p
      where p.member_id = p_member_id and p.product = p_product and p.mode = p_mode
        and p.switch_from is not distinct from p_switch_from
        and p.payment_status = 'open' and p.checkout_url is not null
        and p.expires_at > now() + make_interval(secs => greatest(p_reuse_margin_seconds, 0))
      order by p.created_at desc
      limit 1),
    'stale_sessions', coalesce((
      select jsonb_agg(p.checkout_session_id order by p.created_at)
      from purchases p
      where p.member_id = p_member_id and p.payment_status = 'open'
        and (p.expires_at is null or p.expires_at > now())
        and ((p_mode = 'subscription' and p.mode = 'subscription' and p.product <> p_product)
             or (p_switch_from is not null and p.switch_from = p_switch_from
                 and p.product <> p_product))), '[]'::jsonb),
    'switch_paid', p_switch_from is not null and exists (
      select 1 from purchases p
      where p.switch_from = p_switch_from and p.payment_status = 'paid' and not p.duplicate),
    'customer_id', (select stripe_customer_id from customers where member_id = p_member_id))
$$;

-- Record a session we created (status open) and log it once; a replayed idempotent request
-- returns the same session and must not log twice. Sessions the caller expired at Stripe to
-- make way for this one are marked expired at once (their webhook follows).
drop function if exists public.record_checkout_session(text, text, text, bigint, text, text,
                                                        jsonb);
create or replace function public.record_checkout_session(
  p_checkout_session_id text,
  p_member_id text,
  p_product text,
  p_amount bigint,
  p_currency text,
  p_switch_from text default null,
  p_metadata jsonb default '{}'::jsonb,
  p_mode text default 'payment',
  p_url text default null,
  p_expires_at timestamptz default null,
  p_expired_sessions jsonb default '[]'::jsonb
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
begin
  insert into purchases (checkout_session_id, member_id, product, mode, amount, currency,
                         status, payment_status, switch_from, checkout_url, expires_at)
  values (p_checkout_session_id, p_member_id, p_product, coalesce(p_mode, 'payment'),
          p_amount, p_currency, 'open', 'open', p_switch_from, p_url, p_expires_at)
  on conflict (checkout_session_id) do update
  set checkout_url = coalesce(purchases.checkout_url, excluded.checkout_url),
      expires_at = coalesce(purchases.expires_at, excluded.expires_at)
  returning id into v_id;
  update purchases set payment_status = 'expired', status = 'expired', updated_at = now()
  where checkout_session_id in (
          select jsonb_array_elements_text(coalesce(p_expired_sessions, '[]'::jsonb)))
    and member_id = p_member_id and payment_status = 'open';
  if not exists (select 1 from payment_logs
                 where stripe_object_id = p_checkout_session_id
                   and event_type = 'checkout.session.created') then
    insert into payment_logs (event_type, user_id, amount, currency, status, stripe_object_id,
                              metadata)
    values ('checkout.session.created', p_member_id, p_amount, p_currency, 'open',
            p_checkout_session_id, coalesce(p_metadata, '{}'::jsonb));
    return jsonb_build_object('created', true);
  end if;
  return jsonb_build_object('created', false);
end
$$;

drop function if exists public._on_purchase_paid(text, public.purchases);
drop function if exists public._enqueue_add_project(text, public.purchases);

do $$
declare
  f text;
begin
  foreach f in array array[
    'public._member_ref(text, timestamptz)',
    'public._remember_customer(text, text)',
    'public._dispute_status_rank(text)',
    'public._dispute_state(text)',
    'public._refunded_amount(text)',
    'public._purchase_status(text, boolean, bigint, bigint, text)',
    'public._enqueue(text, text, text, text, jsonb)',
    'public._refresh_purchase(bigint, text)',
    'public._recompute_refunded(text, bigint)',
    'public._holds_track(text, text, bigint, boolean)',
    'public._holds_subscription(text, bigint, text)',
    'public._is_duplicate(public.purchases, boolean)',
    'public._lock_member(text)',
    'public._set_payment_status(bigint, text, text, boolean)',
    'public._apply_checkout_session(text, jsonb)',
    'public._apply_payment_intent(text, jsonb)',
    'public._refresh_payment(text, text)',
    'public._apply_refund(text, jsonb, timestamptz)',
    'public._apply_charge_refunded(text, jsonb, timestamptz)',
    'public._apply_dispute(text, jsonb, timestamptz)',
    'public._apply_subscription(jsonb, text, timestamptz)',
    'public.process_stripe_event(text, text, timestamptz, text, text, jsonb, jsonb)',
    'public.complete_outbox_dispatch(bigint, jsonb)',
    'public.member_owns_product(text, text)',
    'public.checkout_context(text, text, text, text, integer)',
    'public.record_checkout_session(text, text, text, bigint, text, text, jsonb, text, text, '
      'timestamptz, jsonb)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;

-- Replaces claim_outbox_dispatches (20261126000500): rows also carry their dedupe key, which
-- Make.com receives as the dispatch's idempotency_key (the same for every attempt, whichever
-- event or run performs it).
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
    returning o.id, o.kind, o.dedupe_key, o.event_id, o.payload, o.attempts, o.created_at
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'kind', kind, 'dedupe_key', dedupe_key,
                                               'event_id', event_id, 'payload', payload,
                                               'attempts', attempts, 'created_at', created_at)
                            order by id), '[]'::jsonb)
  from claimed
$$;
