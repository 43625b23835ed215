-- Subscriptions after checkout: every invoice Stripe bills (first payment, renewals, failed
-- renewals) is recorded with its plan and member, a failed renewal queues a payment_failed
-- dispatch for Make.com, and analytics count subscription revenue by plan.
--
-- Replaces, from 20261126000800_member_data.sql: the analytics_daily and analytics_monthly
-- views (one-time revenue from purchases, subscription revenue from paid invoices, so a
-- subscription's first payment is counted once) and analytics_report (the same figures plus
-- kind, renewal and failed-payment counts).

create table if not exists public.subscription_invoices (
  id                   text primary key,
  subscription_id      text,
  member_id            text,
  product              text,
  customer_id          text,
  payment_intent_id    text,
  amount_due           bigint,
  amount_paid          bigint not null default 0,
  currency             text,
  status               text not null,
  billing_reason       text,
  attempt_count        integer not null default 0,
  next_payment_attempt timestamptz,
  paid_at              timestamptz,
  failed_at            timestamptz,
  state_as_of          timestamptz not null,
  created_at           timestamptz not null default now(),
  updated_at           timestamptz not null default now()
);
create index if not exists subscription_invoices_member_idx
  on public.subscription_invoices (member_id);
create index if not exists subscription_invoices_subscription_idx
  on public.subscription_invoices (subscription_id);
create index if not exists subscription_invoices_payment_intent_idx
  on public.subscription_invoices (payment_intent_id) where payment_intent_id is not null;
create index if not exists subscription_invoices_paid_at_idx
  on public.subscription_invoices (paid_at) where paid_at is not null;
create index if not exists subscription_invoices_updated_at_idx
  on public.subscription_invoices (updated_at);

alter table public.subscription_invoices enable row level security;
revoke all on table public.subscription_invoices from public, anon, authenticated;
grant all on table public.subscription_invoices to service_role;
grant select on table public.subscription_invoices to authenticated;
drop policy if exists subscription_invoices_member_read on public.subscription_invoices;
create policy subscription_invoices_member_read on public.subscription_invoices
  for select to authenticated
  using (member_id = (auth.jwt() ->> 'sub'));

-- Paid, void and uncollectible end an invoice's life; an older "open" never replaces them.
create or replace function public._invoice_status_rank(p_status text) returns integer
language sql immutable
set search_path = public, pg_temp
as $$
  select case when p_status in ('paid', 'void', 'uncollectible') then 3
              when p_status = 'open' then 2 else 1 end
$$;

-- invoice.paid / invoice.payment_failed (and the subscription's state, re-read from Stripe).
create or replace function public._apply_invoice(
  p_event_id text, p_event_type text, p_data jsonb, p_event_created timestamptz
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_invoice text := p_data ->> 'invoice_id';
  v_subscription text := p_data ->> 'subscription_id';
  v_member text;
  v_product text;
  v_row subscription_invoices;
  v_sub jsonb;
  v_failed boolean := p_event_type = 'invoice.payment_failed';
begin
  select member_id, product into v_member, v_product
  from subscriptions where id = v_subscription;
  v_member := coalesce(
    public._member_ref(p_data ->> 'member_id', (p_data ->> 'object_created')::timestamptz),
    v_member,
    (select member_id from customers where stripe_customer_id = p_data ->> 'customer'));
  v_product := coalesce(p_data ->> 'product', v_product);

  insert into subscription_invoices as i (
    id, subscription_id, member_id, product, customer_id, payment_intent_id, amount_due,
    amount_paid, currency, status, billing_reason, attempt_count, next_payment_attempt,
    paid_at, failed_at, state_as_of)
  values (
    v_invoice, v_subscription, v_member, v_product, p_data ->> 'customer',
    p_data ->> 'payment_intent', (p_data ->> 'amount_due')::bigint,
    coalesce((p_data ->> 'amount_paid')::bigint, 0), p_data ->> 'currency',
    coalesce(p_data ->> 'status', case when v_failed then 'open' else 'paid' end),
    p_data ->> 'billing_reason', coalesce((p_data ->> 'attempt_count')::integer, 0),
    (p_data ->> 'next_payment_attempt')::timestamptz,
    case when not v_failed then p_event_created end,
    case when v_failed then p_event_created end,
    p_event_created)
  on conflict (id) do update
  set status = case
        when public._invoice_status_rank(excluded.status) > public._invoice_status_rank(i.status)
          or (excluded.state_as_of >= i.state_as_of
              and public._invoice_status_rank(excluded.status)
                  >= public._invoice_status_rank(i.status))
        then excluded.status else i.status end,
      amount_paid = greatest(i.amount_paid, excluded.amount_paid),
      amount_due = coalesce(excluded.amount_due, i.amount_due),
      attempt_count = greatest(i.attempt_count, excluded.attempt_count),
      next_payment_attempt = case when excluded.state_as_of >= i.state_as_of
                                  then excluded.next_payment_attempt
                                  else i.next_payment_attempt end,
      paid_at = coalesce(i.paid_at, excluded.paid_at),
      failed_at = greatest(i.failed_at, excluded.failed_at),
      member_id = coalesce(i.member_id, excluded.member_id),
      product = coalesce(excluded.product, i.product),
      subscription_id = coalesce(i.subscription_id, excluded.subscription_id),
      payment_intent_id = coalesce(i.payment_intent_id, excluded.payment_intent_id),
      state_as_of = greatest(i.state_as_of, excluded.state_as_of),
      updated_at = now()
  returning * into v_row;

  if v_failed then
    -- One notification per failed attempt, so the business hears of each retry that failed.
    perform public._enqueue(
      'payment_failed', 'payment_failed:' || v_invoice || ':' || v_row.attempt_count,
      p_event_id, v_member,
      jsonb_build_object(
        'member_id', v_member,
        'product', v_product,
        'subscription', v_subscription,
        'invoice', v_invoice,
        'amount_due', v_row.amount_due,
        'currency', v_row.currency,
        'attempt_count', v_row.attempt_count,
        'next_payment_attempt', v_row.next_payment_attempt));
  end if;

  v_sub := p_data -> 'subscription_state';
  if jsonb_typeof(v_sub) = 'object' then
    perform public._apply_subscription(v_sub, p_event_type, p_event_created);
  end if;
  return jsonb_build_object(
    'outcome', 'applied', 'member_id', v_member, 'product', v_product,
    'subscription_status', (select status from subscriptions where id = v_subscription));
end
$$;

-- --- analytics -----------------------------------------------------------------------------

drop function if exists public.analytics_report(date, date);
drop view if exists public.analytics_monthly;
drop view if exists public.analytics_daily;

-- Facts per UTC day, product and currency (kind: one_time | subscription):
--   gross      one-time purchases that took money, by the day their checkout started, and
--              paid subscription invoices (first payment and renewals), by the day paid;
--   refunds    succeeded refunds, by the day of the refund, attributed to the purchase's
--              product or the invoice's plan;
--   disputes   purchases now disputed or lost to a dispute (amount not already refunded);
--   paid_count purchases paid (a new subscriber counts once, renewals separately);
--   renewals   paid renewal invoices; payment_failures: failed renewal attempts;
--   sessions   checkout sessions created.
create view public.analytics_daily
with (security_invoker = true) as
with facts as (
  select (p.created_at at time zone 'UTC')::date as day, p.product, p.currency,
         case when p.mode = 'subscription' then 'subscription' else 'one_time' end as kind,
         case when p.mode = 'subscription' then 0 else p.amount end as gross,
         0::bigint as refunds, 0::bigint as disputes,
         1 as paid_count, 0 as refund_count, 0 as dispute_count, 0 as sessions_created,
         0 as renewal_count, 0 as payment_failure_count
  from purchases p
  where p.payment_status = 'paid'
  union all
  select (i.paid_at at time zone 'UTC')::date, coalesce(i.product, 'unknown'),
         coalesce(i.currency, 'usd'), 'subscription', i.amount_paid, 0, 0, 0, 0, 0, 0,
         case when i.billing_reason = 'subscription_create' then 0 else 1 end, 0
  from subscription_invoices i
  where i.status = 'paid' and i.paid_at is not null and i.amount_paid > 0
  union all
  select (i.failed_at at time zone 'UTC')::date, coalesce(i.product, 'unknown'),
         coalesce(i.currency, 'usd'), 'subscription', 0, 0, 0, 0, 0, 0, 0, 0, 1
  from subscription_invoices i
  where i.failed_at is not null
  union all
  select (r.created_at at time zone 'UTC')::date,
         coalesce(p.product, i.product, 'unknown'), r.currency,
         case when coalesce(p.mode, 'payment') = 'subscription' or i.id is not null
              then 'subscription' else 'one_time' end,
         0, r.amount, 0, 0, 1, 0, 0, 0, 0
  from refunds r
  left join purchases p on p.payment_intent_id = r.payment_intent_id
  left join subscription_invoices i
    on p.id is null and i.payment_intent_id = r.payment_intent_id
  where r.status = 'succeeded'
  union all
  select (p.updated_at at time zone 'UTC')::date, p.product, p.currency,
         case when p.mode = 'subscription' then 'subscription' else 'one_time' end,
         0, 0, greatest(p.amount - p.amount_refunded, 0), 0, 0, 1, 0, 0, 0
  from purchases p
  where p.status in ('disputed', 'dispute_lost')
  union all
  select (l.created_at at time zone 'UTC')::date,
         coalesce(p.product, l.metadata ->> 'product', 'unknown'),
         coalesce(l.currency, p.currency, 'usd'),
         case when coalesce(p.mode, l.metadata ->> 'mode') = 'subscription'
              then 'subscription' else 'one_time' end,
         0, 0, 0, 0, 0, 0, 1, 0, 0
  from payment_logs l
  left join purchases p on p.checkout_session_id = l.stripe_object_id
  where l.event_type = 'checkout.session.created'
)
select day, product, currency, max(kind) as kind,
       sum(gross)::bigint as gross,
       sum(refunds)::bigint as refunds,
       sum(disputes)::bigint as disputes,
       (sum(gross) - sum(refunds) - sum(disputes))::bigint as net,
       sum(paid_count)::integer as paid_count,
       sum(refund_count)::integer as refund_count,
       sum(dispute_count)::integer as dispute_count,
       sum(sessions_created)::integer as sessions_created,
       sum(renewal_count)::integer as renewal_count,
       sum(payment_failure_count)::integer as payment_failure_count
from facts
group by day, product, currency;

create view public.analytics_monthly
with (security_invoker = true) as
select date_trunc('month', day)::date as month, product, currency, max(kind) as kind,
       sum(gross)::bigint as gross,
       sum(refunds)::bigint as refunds,
       sum(disputes)::bigint as disputes,
       sum(net)::bigint as net,
       sum(paid_count)::integer as paid_count,
       sum(refund_count)::integer as refund_count,
       sum(dispute_count)::integer as dispute_count,
       sum(sessions_created)::integer as sessions_created,
       sum(renewal_count)::integer as renewal_count,
       sum(payment_failure_count)::integer as payment_failure_count,
       case when sum(sessions_created) > 0
            then round(sum(paid_count)::numeric / sum(sessions_created), 4) end
         as conversion_rate,
       case when sum(gross) > 0 then round(sum(refunds)::numeric / sum(gross), 4) end
         as refund_rate
from analytics_daily
group by 1, product, currency;

revoke all on table public.analytics_daily, public.analytics_monthly
  from public, anon, authenticated;
grant select on table public.analytics_daily, public.analytics_monthly to service_role;

-- The analytics of [p_from, p_to] (inclusive UTC days): per day, per month (within the range)
-- and per product over the whole range.
create function public.analytics_report(p_from date, p_to date) returns jsonb
language plpgsql stable
set search_path = public, pg_temp
as $$
declare
  v_result jsonb;
begin
  if p_from is null or p_to is null or p_from > p_to then
    raise exception 'from must be on or before to' using errcode = 'PY422';
  end if;
  with d as (
    select * from analytics_daily where day between p_from and p_to
  ), m as (
    select date_trunc('month', day)::date as period, product, currency, max(kind) as kind,
           sum(gross) as gross, sum(refunds) as refunds, sum(disputes) as disputes,
           sum(net) as net, sum(paid_count) as paid_count, sum(refund_count) as refund_count,
           sum(dispute_count) as dispute_count, sum(sessions_created) as sessions_created,
           sum(renewal_count) as renewal_count,
           sum(payment_failure_count) as payment_failure_count
    from d group by 1, product, currency
  ), t as (
    select product, currency, max(kind) as kind,
           sum(gross) as gross, sum(refunds) as refunds, sum(disputes) as disputes,
           sum(net) as net, sum(paid_count) as paid_count, sum(refund_count) as refund_count,
           sum(dispute_count) as dispute_count, sum(sessions_created) as sessions_created,
           sum(renewal_count) as renewal_count,
           sum(payment_failure_count) as payment_failure_count
    from d group by product, currency
  )
  select jsonb_build_object(
    'daily', coalesce((select jsonb_agg(to_jsonb(x) order by x.period, x.product, x.currency)
                       from (select d.day as period, d.product, d.currency, d.kind, d.gross,
                                    d.refunds, d.disputes, d.net, d.paid_count, d.refund_count,
                                    d.dispute_count, d.sessions_created, d.renewal_count,
                                    d.payment_failure_count from d) x), '[]'::jsonb),
    'monthly', coalesce((select jsonb_agg(to_jsonb(m) order by m.period, m.product, m.currency)
                         from m), '[]'::jsonb),
    'by_product', coalesce((select jsonb_agg(to_jsonb(t) order by t.product, t.currency)
                            from t), '[]'::jsonb)
  ) into v_result;
  return v_result;
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public._invoice_status_rank(text)',
    'public._apply_invoice(text, text, jsonb, timestamptz)',
    'public.analytics_report(date, date)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
