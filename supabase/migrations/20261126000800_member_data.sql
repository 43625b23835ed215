-- Member data (GitHub issue 8): export and erasure of what we hold about a member, the daily
-- retention purge, and the analytics views.
--
-- Member reads are SECURITY INVOKER and carry no WHERE on the member id: they run as the
-- member (role authenticated, JWT sub = member id), so row-level security alone decides which
-- rows they see, and a bug in a filter cannot leak another member's rows. Service functions
-- run as the service role only.

-- A record that an erasure happened, without the member id: the pseudonym is the same one the
-- erased rows now carry, so the record can be matched by whoever already knows the id.
create table if not exists public.erasures (
  pseudonym       text primary key check (pseudonym like 'erased:%'),
  first_erased_at timestamptz not null default now(),
  last_erased_at  timestamptz not null default now(),
  -- 'member' (the member asked) or 'admin:<pseudonym of the admin>'.
  requested_by    text not null check (requested_by = 'member' or requested_by like 'admin:%'),
  requests        integer not null default 1 check (requests > 0),
  rows_changed    jsonb not null default '{}'::jsonb
);
create index if not exists erasures_last_erased_at_idx on public.erasures (last_erased_at);

alter table public.erasures enable row level security;
revoke all on table public.erasures from public, anon, authenticated;
grant all on table public.erasures to service_role;

-- The retention purge selects by age; these keep each batch an index range scan.
create index if not exists purchases_updated_at_idx on public.purchases (updated_at);
create index if not exists refunds_updated_at_idx on public.refunds (updated_at);
create index if not exists subscriptions_updated_at_idx on public.subscriptions (updated_at);
create index if not exists outbox_sent_at_idx on public.outbox (sent_at) where status = 'sent';
create index if not exists purchases_disputed_idx on public.purchases (payment_intent_id)
  where status = 'disputed';

-- The stable pseudonym that replaces a member id in the rows kept for accounting.
create or replace function public.member_pseudonym(p_member_id text) returns text
language sql immutable strict
set search_path = public, pg_temp
as $$
  select 'erased:' || left(encode(sha256(convert_to(p_member_id, 'UTF8')), 'hex'), 16)
$$;

-- Everything we hold about the calling member, as JSON. SECURITY INVOKER, no member filter:
-- RLS on every table restricts it to the rows of the JWT's sub.
create or replace function public.member_data_export() returns jsonb
language sql stable security invoker
set search_path = public, pg_temp
as $$
  select jsonb_build_object(
    'customer', (select to_jsonb(c) from customers c limit 1),
    'payment_logs', coalesce(
      (select jsonb_agg(to_jsonb(l) order by l.id) from payment_logs l), '[]'::jsonb),
    'purchases', coalesce(
      (select jsonb_agg(to_jsonb(p) order by p.id) from purchases p), '[]'::jsonb),
    'subscriptions', coalesce(
      (select jsonb_agg(to_jsonb(s) order by s.created_at, s.id) from subscriptions s),
      '[]'::jsonb),
    'refunds', coalesce(
      (select jsonb_agg(to_jsonb(r) order by r.created_at, r.id) from refunds r), '[]'::jsonb)
  )
$$;

-- Erase a member: one transaction, idempotent. Rows that accounting needs (payment_logs,
-- purchases, refunds, ended subscriptions) keep their amounts with the member id replaced by
-- the pseudonym and free text removed; the member <-> Stripe customer mapping and the outbox
-- payloads that name the member are deleted. Stripe's own records are not touched.
-- A live subscription is refused (PY409): Stripe would keep billing a member we no longer know.
create or replace function public.erase_member_data(
  p_member_id text,
  p_requested_by text default null
) returns jsonb
language plpgsql
set search_path = public, pg_temp
set lock_timeout = '5s'
as $$
declare
  v_pseudonym text;
  v_requested_by text;
  v_rows jsonb;
  v_logs bigint;
  v_purchases bigint;
  v_refunds bigint;
  v_refund_requests bigint;
  v_subscriptions bigint;
  v_customers bigint;
  v_outbox bigint;
  v_total bigint;
  v_existing boolean;
  -- Metadata keys with no personal data, kept on anonymised log rows for accounting.
  v_kept_keys constant text[] := array['product', 'mode', 'interval', 'price_id',
                                       'lookup_key', 'reason', 'payment_intent',
                                       'checkout_session', 'switch_from', 'switch_to'];
begin
  if p_member_id is null or btrim(p_member_id) = '' or p_member_id like 'erased:%' then
    raise exception 'a member id is required' using errcode = 'PY400';
  end if;
  v_pseudonym := member_pseudonym(p_member_id);
  v_requested_by := case
    when p_requested_by is null or p_requested_by = p_member_id then 'member'
    else 'admin:' || substr(member_pseudonym(p_requested_by), 8)
  end;
  -- Two erasures of the same member run one after the other.
  perform pg_advisory_xact_lock(hashtextextended(v_pseudonym, 0));

  if exists (
    select 1 from subscriptions
    where member_id = p_member_id
      and status not in ('canceled', 'incomplete_expired')
  ) then
    raise exception 'the member has a subscription that is not cancelled'
      using errcode = 'PY409';
  end if;

  update payment_logs
     set user_id = v_pseudonym,
         metadata = jsonb_build_object('erased', true) || coalesce(
           (select jsonb_object_agg(key, value) from jsonb_each(metadata)
             where key = any (v_kept_keys)), '{}'::jsonb)
   where user_id = p_member_id;
  get diagnostics v_logs = row_count;

  update purchases set member_id = v_pseudonym, updated_at = now()
   where member_id = p_member_id;
  get diagnostics v_purchases = row_count;

  update refunds set member_id = v_pseudonym, note = null, updated_at = now()
   where member_id = p_member_id;
  get diagnostics v_refunds = row_count;
  -- The member may also have asked for refunds as an admin.
  update refunds set requested_by = 'admin:' || substr(v_pseudonym, 8)
   where requested_by = p_member_id;
  get diagnostics v_refund_requests = row_count;

  update subscriptions
     set member_id = v_pseudonym, stripe_customer_id = v_pseudonym, updated_at = now()
   where member_id = p_member_id;
  get diagnostics v_subscriptions = row_count;

  delete from customers where member_id = p_member_id;
  get diagnostics v_customers = row_count;

  -- Payload JSON is the service's own; the member id appears in it as a JSON string.
  delete from outbox where strpos(payload::text, to_jsonb(p_member_id)::text) > 0;
  get diagnostics v_outbox = row_count;

  v_rows := jsonb_build_object(
    'payment_logs', v_logs, 'purchases', v_purchases, 'refunds', v_refunds + v_refund_requests,
    'subscriptions', v_subscriptions, 'customers', v_customers, 'outbox', v_outbox);
  v_total := v_logs + v_purchases + v_refunds + v_refund_requests + v_subscriptions
             + v_customers + v_outbox;

  select true into v_existing from erasures where pseudonym = v_pseudonym;
  insert into erasures as e (pseudonym, requested_by, rows_changed)
  values (v_pseudonym, v_requested_by, v_rows)
  on conflict (pseudonym) do update
    set last_erased_at = now(),
        requested_by = excluded.requested_by,
        requests = e.requests + 1,
        rows_changed = case when v_total > 0 then excluded.rows_changed else e.rows_changed end;

  return jsonb_build_object(
    'pseudonym', v_pseudonym,
    'erased_at', now(),
    'already_erased', coalesce(v_existing, false) and v_total = 0,
    'rows', v_rows);
end
$$;

-- Delete (or, in a dry run, count) up to p_batch_size expired rows of one target. One short
-- transaction per call: rows locked by a concurrent writer are skipped (next batch or next run),
-- and a lock wait is bounded. Rows an open dispute still needs are kept: those of a purchase in
-- status 'disputed', and its refunds and log lines.
--   processed_events: older than p_ledger_days (Stripe stops retrying after 3 days);
--   outbox:           sent more than p_ledger_days ago (pending rows are never purged);
--   payment_logs, purchases (by last update), refunds (by last update), ended subscriptions,
--   erasures (by last request): older than p_retention_months;
--   customers:        created before the window and referenced by no remaining row.
create or replace function public.purge_expired_rows(
  p_target text,
  p_retention_months integer,
  p_ledger_days integer,
  p_batch_size integer default 1000,
  p_dry_run boolean default false
) returns jsonb
language plpgsql
set search_path = public, pg_temp
set lock_timeout = '2s'
as $$
declare
  v_table text;
  v_key text;
  v_age text;
  v_due text;
  v_rows bigint;
  -- An open dispute needs the purchase, its refunds and its log lines.
  v_disputed constant text := 'exists (select 1 from public.purchases p '
                              'where p.status = ''disputed'' ';
begin
  if p_retention_months is null or p_retention_months < 1
     or p_ledger_days is null or p_ledger_days < 1 then
    raise exception 'retention windows must be positive' using errcode = 'PY400';
  end if;
  -- $1 is the retention cutoff, $2 the ledger cutoff; only constants are spliced in below.
  case p_target
    when 'processed_events' then
      v_table := 'processed_events'; v_key := 'event_id'; v_age := 'processed_at';
      v_due := 't.processed_at < $2';
    when 'outbox' then
      v_table := 'outbox'; v_key := 'id'; v_age := 'sent_at';
      v_due := 't.status = ''sent'' and t.sent_at < $2';
    when 'refunds' then
      v_table := 'refunds'; v_key := 'id'; v_age := 'updated_at';
      v_due := 't.updated_at < $1 and not ' || v_disputed
               || 'and p.payment_intent_id = t.payment_intent_id)';
    when 'payment_logs' then
      v_table := 'payment_logs'; v_key := 'id'; v_age := 'created_at';
      v_due := 't.created_at < $1 and not ' || v_disputed
               || 'and (t.stripe_object_id in (p.checkout_session_id, p.payment_intent_id)'
               || ' or t.metadata ->> ''payment_intent'' = p.payment_intent_id'
               || ' or t.metadata ->> ''checkout_session'' = p.checkout_session_id))';
    when 'purchases' then
      v_table := 'purchases'; v_key := 'id'; v_age := 'updated_at';
      v_due := 't.updated_at < $1 and t.status <> ''disputed''';
    when 'subscriptions' then
      v_table := 'subscriptions'; v_key := 'id'; v_age := 'updated_at';
      v_due := 't.updated_at < $1 and t.status in (''canceled'', ''incomplete_expired'')';
    when 'customers' then
      v_table := 'customers'; v_key := 'member_id'; v_age := 'created_at';
      v_due := 't.created_at < $1'
        || ' and not exists (select 1 from public.purchases p where p.member_id = t.member_id)'
        || ' and not exists (select 1 from public.subscriptions s'
        || ' where s.member_id = t.member_id)'
        || ' and not exists (select 1 from public.payment_logs l where l.user_id = t.member_id)';
    when 'erasures' then
      v_table := 'erasures'; v_key := 'pseudonym'; v_age := 'last_erased_at';
      v_due := 't.last_erased_at < $1';
    else
      raise exception 'unknown retention target' using errcode = 'PY400';
  end case;

  if p_dry_run then
    execute format('select count(*) from public.%I t where %s', v_table, v_due)
      into v_rows
      using now() - make_interval(months => p_retention_months),
            now() - make_interval(days => p_ledger_days);
  else
    execute format(
      'with due as (select t.%1$I as k from public.%2$I t where %3$s order by t.%4$I'
      ' limit %5$s for update of t skip locked),'
      ' gone as (delete from public.%2$I x using due where x.%1$I = due.k returning 1)'
      ' select count(*) from gone',
      v_key, v_table, v_due, v_age, least(greatest(coalesce(p_batch_size, 1000), 1), 10000))
      into v_rows
      using now() - make_interval(months => p_retention_months),
            now() - make_interval(days => p_ledger_days);
  end if;
  return jsonb_build_object('target', p_target, 'rows', v_rows, 'dry_run', p_dry_run);
end
$$;

-- Analytics. Facts per UTC day, product track and currency:
--   gross      purchases that took money (paid, refunded or not, disputed, switched), by the
--              day their checkout started;
--   refunds    succeeded refunds, by the day of the refund, attributed to the purchase's track;
--   disputes   purchases now disputed (amount not already refunded), by their last update;
--   sessions   checkout sessions created (payment_logs 'checkout.session.created').
-- net = gross - refunds - disputes; conversion = paid purchases / sessions created;
-- refund_rate = refunds / gross (amounts).
create or replace view public.analytics_daily
with (security_invoker = true) as
with facts as (
  select (p.created_at at time zone 'UTC')::date as day, p.product, p.currency,
         p.amount as gross, 0::bigint as refunds, 0::bigint as disputes,
         1 as paid_count, 0 as refund_count, 0 as dispute_count, 0 as sessions_created
  from purchases p
  where p.status in ('paid', 'partially_refunded', 'refunded', 'disputed', 'switched')
  union all
  select (r.created_at at time zone 'UTC')::date, coalesce(p.product, 'unknown'), r.currency,
         0, r.amount, 0, 0, 1, 0, 0
  from refunds r
  left join purchases p on p.payment_intent_id = r.payment_intent_id
  where r.status = 'succeeded'
  union all
  select (p.updated_at at time zone 'UTC')::date, p.product, p.currency,
         0, 0, greatest(p.amount - p.amount_refunded, 0), 0, 0, 1, 0
  from purchases p
  where p.status = 'disputed'
  union all
  select (l.created_at at time zone 'UTC')::date,
         coalesce(p.product, l.metadata ->> 'product', 'unknown'),
         coalesce(l.currency, p.currency, 'usd'), 0, 0, 0, 0, 0, 0, 1
  from payment_logs l
  left join purchases p on p.checkout_session_id = l.stripe_object_id
  where l.event_type = 'checkout.session.created'
)
select day, product, currency,
       sum(gross)::bigint as gross,
       sum(refunds)::bigint as refunds,
       sum(disputes)::bigint as disputes,
       (sum(gross) - sum(refunds) - sum(disputes))::bigint as net,
       sum(paid_count)::integer as paid_count,
       sum(refund_count)::integer as refund_count,
       sum(dispute_count)::integer as dispute_count,
       sum(sessions_created)::integer as sessions_created
from facts
group by day, product, currency;

create or replace view public.analytics_monthly
with (security_invoker = true) as
select date_trunc('month', day)::date as month, product, currency,
       sum(gross)::bigint as gross,
       sum(refunds)::bigint as refunds,
       sum(disputes)::bigint as disputes,
       sum(net)::bigint as net,
       sum(paid_count)::integer as paid_count,
       sum(refund_count)::integer as refund_count,
       sum(dispute_count)::integer as dispute_count,
       sum(sessions_created)::integer as sessions_created,
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
create or replace function public.analytics_report(p_from date, p_to date) returns jsonb
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
    select date_trunc('month', day)::date as month, product, currency,
           sum(gross) as gross, sum(refunds) as refunds, sum(disputes) as disputes,
           sum(net) as net, sum(paid_count) as paid_count, sum(refund_count) as refund_count,
           sum(dispute_count) as dispute_count, sum(sessions_created) as sessions_created
    from d group by 1, product, currency
  ), t as (
    select product, currency,
           sum(gross) as gross, sum(refunds) as refunds, sum(disputes) as disputes,
           sum(net) as net, sum(paid_count) as paid_count, sum(refund_count) as refund_count,
           sum(dispute_count) as dispute_count, sum(sessions_created) as sessions_created
    from d group by product, currency
  )
  select jsonb_build_object(
    'daily', coalesce((select jsonb_agg(jsonb_build_object(
        'period', d.day, 'product', d.product, 'currency', d.currency,
        'gross', d.gross, 'refunds', d.refunds, 'disputes', d.disputes, 'net', d.net,
        'paid_count', d.paid_count, 'refund_count', d.refund_count,
        'dispute_count', d.dispute_count, 'sessions_created', d.sessions_created)
        order by d.day, d.product, d.currency) from d), '[]'::jsonb),
    'monthly', coalesce((select jsonb_agg(jsonb_build_object(
        'period', m.month, 'product', m.product, 'currency', m.currency,
        'gross', m.gross, 'refunds', m.refunds, 'disputes', m.disputes, 'net', m.net,
        'paid_count', m.paid_count, 'refund_count', m.refund_count,
        'dispute_count', m.dispute_count, 'sessions_created', m.sessions_created)
        order by m.month, m.product, m.currency) from m), '[]'::jsonb),
    'by_product', coalesce((select jsonb_agg(jsonb_build_object(
        'product', t.product, 'currency', t.currency,
        'gross', t.gross, 'refunds', t.refunds, 'disputes', t.disputes, 'net', t.net,
        'paid_count', t.paid_count, 'refund_count', t.refund_count,
        'dispute_count', t.dispute_count, 'sessions_created', t.sessions_created)
        order by t.product, t.currency) from t), '[]'::jsonb)
  ) into v_result;
  return v_result;
end
$$;

-- Grants: the member read to authenticated only; as the service role (which bypasses RLS) it
-- would return every member's data. Everything else to the service role only. Supabase's
-- default privileges grant new functions to anon, authenticated and service_role: take back.
revoke all on function public.member_data_export() from public, anon, service_role;
grant execute on function public.member_data_export() to authenticated;

revoke all on function public.member_pseudonym(text) from public, anon, authenticated;
grant execute on function public.member_pseudonym(text) to service_role;
revoke all on function public.erase_member_data(text, text) from public, anon, authenticated;
grant execute on function public.erase_member_data(text, text) to service_role;
revoke all on function public.purge_expired_rows(text, integer, integer, integer, boolean)
  from public, anon, authenticated;
grant execute on function public.purge_expired_rows(text, integer, integer, integer, boolean)
  to service_role;
revoke all on function public.analytics_report(date, date) from public, anon, authenticated;
grant execute on function public.analytics_report(date, date) to service_role;
