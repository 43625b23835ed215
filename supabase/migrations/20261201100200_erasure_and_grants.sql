-- Erasure waits for money work, the purge knows the new tables, and privileges are tight.
--
-- Replaces, from 20261126000800_member_data.sql:
--   erase_member_data  refuses (without raising) while money or fulfilment is still owed to or
--                      by the member: a live subscription, a checkout still open or a payment
--                      still settling, a refund not yet final, a dispatch not yet performed;
--                      erases the new tables too, and an erased admin's id from the refund log
--                      lines of other members;
--   member_data_export includes the member's subscription invoices;
--   purge_expired_rows knows charges, disputes and subscription_invoices; a purchase whose
--                      dispute was lost is no longer kept for ever (only an open dispute keeps
--                      its rows).
-- Also: member_payment_logs is no longer executable by service_role (it bypasses RLS and would
-- list every member's rows), and Supabase's default privileges in schema public are tightened
-- so that a table or function added later is exposed to nobody until a migration grants it.

revoke all on function public.member_payment_logs(integer, bigint) from service_role;

-- Supabase grants what the migration role creates in public to anon and authenticated (per
-- schema), and Postgres grants EXECUTE on every new function to PUBLIC (globally): take both
-- back, so a later table or function is exposed only by an explicit grant.
alter default privileges in schema public revoke all on tables from anon, authenticated;
alter default privileges in schema public revoke all on sequences from anon, authenticated;
alter default privileges in schema public revoke all on functions from anon, authenticated;
alter default privileges revoke execute on functions from public;
-- Identity sequences created before this migration were granted that way too.
revoke all on all sequences in schema public from anon, authenticated;

-- The ledger `make migrate` keeps on a plain Postgres (never created on Supabase itself).
do $$
begin
  if to_regclass('public.local_schema_migrations') is not null then
    execute 'alter table public.local_schema_migrations enable row level security';
    execute 'revoke all on table public.local_schema_migrations '
            'from public, anon, authenticated';
  end if;
end
$$;

-- Why a member's data cannot be erased yet (null when it can). Each of these is money or work
-- still owed to or by the member, and erasing would hide it from the people who must finish it.
create or replace function public._erasure_blocker(p_member_id text) returns text
language sql stable
set search_path = public, pg_temp
as $$
  select case
    when exists (select 1 from subscriptions
                 where member_id = p_member_id
                   and status not in ('canceled', 'incomplete_expired'))
      then 'subscription_active'
    when exists (select 1 from purchases
                 where member_id = p_member_id
                   and (payment_status = 'processing'
                        or (payment_status = 'open'
                            and (expires_at is null or expires_at > now()))))
      then 'purchase_open'
    when exists (select 1 from refunds
                 where member_id = p_member_id
                   and status in ('requested', 'pending', 'requires_action'))
      then 'refund_pending'
    when exists (select 1 from outbox where member_id = p_member_id and status = 'pending')
      then 'dispatch_pending'
  end
$$;

-- Erase a member: one transaction, idempotent. Rows that accounting needs (payment_logs,
-- purchases, refunds, subscriptions, invoices) keep their amounts with the member id replaced
-- by the pseudonym and free text removed; the member <-> Stripe customer mapping and the sent
-- dispatches that name the member are deleted. Stripe's own records are not touched.
-- Returns {"refused": <reason>} instead while _erasure_blocker names one.
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
  v_admin_ref text;
  v_requested_by text;
  v_blocker text;
  v_rows jsonb;
  v_logs bigint;
  v_admin_logs bigint;
  v_purchases bigint;
  v_refunds bigint;
  v_refund_requests bigint;
  v_subscriptions bigint;
  v_invoices bigint;
  v_customers bigint;
  v_outbox bigint;
  v_total bigint;
  v_existing boolean;
  -- Metadata keys with no personal data, kept on anonymised log rows for accounting.
  v_kept_keys constant text[] := array['product', 'mode', 'interval', 'price_id',
                                       'lookup_key', 'reason', 'payment_intent',
                                       'checkout_session', 'switch_from', 'switch_to',
                                       'subscription', 'invoice'];
begin
  if p_member_id is null or btrim(p_member_id) = '' or p_member_id like 'erased:%' then
    raise exception 'a member id is required' using errcode = 'PY400';
  end if;
  v_pseudonym := member_pseudonym(p_member_id);
  v_admin_ref := 'admin:' || substr(v_pseudonym, 8);
  v_requested_by := case
    when p_requested_by is null or p_requested_by = p_member_id then 'member'
    else 'admin:' || substr(member_pseudonym(p_requested_by), 8)
  end;
  -- Two erasures of the same member run one after the other, and after any payment of theirs
  -- being judged by the worker (the same lock).
  perform pg_advisory_xact_lock(hashtextextended(v_pseudonym, 0));
  perform public._lock_member(p_member_id);

  v_blocker := public._erasure_blocker(p_member_id);
  if v_blocker is not null then
    return jsonb_build_object('refused', v_blocker);
  end if;

  update payment_logs
     set user_id = v_pseudonym,
         metadata = jsonb_build_object('erased', true) || coalesce(
           (select jsonb_object_agg(key, value) from jsonb_each(metadata)
             where key = any (v_kept_keys)), '{}'::jsonb)
   where user_id = p_member_id;
  get diagnostics v_logs = row_count;
  -- The member may have acted as an admin on other members' payments.
  update payment_logs
     set metadata = jsonb_set(metadata, '{requested_by}', to_jsonb(v_admin_ref))
   where metadata ->> 'requested_by' = p_member_id;
  get diagnostics v_admin_logs = row_count;

  update purchases
     set member_id = v_pseudonym, checkout_url = null, updated_at = now()
   where member_id = p_member_id;
  get diagnostics v_purchases = row_count;

  update refunds set member_id = v_pseudonym, note = null, updated_at = now()
   where member_id = p_member_id;
  get diagnostics v_refunds = row_count;
  update refunds set requested_by = v_admin_ref where requested_by = p_member_id;
  get diagnostics v_refund_requests = row_count;

  update subscriptions
     set member_id = v_pseudonym, stripe_customer_id = v_pseudonym, updated_at = now()
   where member_id = p_member_id;
  get diagnostics v_subscriptions = row_count;

  update subscription_invoices
     set member_id = v_pseudonym, customer_id = null, updated_at = now()
   where member_id = p_member_id;
  get diagnostics v_invoices = row_count;

  delete from customers where member_id = p_member_id;
  get diagnostics v_customers = row_count;

  -- Only sent dispatches remain (a pending one refuses the erasure above).
  delete from outbox
  where member_id = p_member_id
     or (member_id is null and strpos(payload::text, to_jsonb(p_member_id)::text) > 0);
  get diagnostics v_outbox = row_count;

  v_rows := jsonb_build_object(
    'payment_logs', v_logs + v_admin_logs, 'purchases', v_purchases,
    'refunds', v_refunds + v_refund_requests, 'subscriptions', v_subscriptions,
    'subscription_invoices', v_invoices, 'customers', v_customers, 'outbox', v_outbox);
  v_total := v_logs + v_admin_logs + v_purchases + v_refunds + v_refund_requests
             + v_subscriptions + v_invoices + v_customers + v_outbox;

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
      (select jsonb_agg(to_jsonb(p) - 'checkout_url' order by p.id) from purchases p),
      '[]'::jsonb),
    'subscriptions', coalesce(
      (select jsonb_agg(to_jsonb(s) order by s.created_at, s.id) from subscriptions s),
      '[]'::jsonb),
    'subscription_invoices', coalesce(
      (select jsonb_agg(to_jsonb(i) order by i.created_at, i.id) from subscription_invoices i),
      '[]'::jsonb),
    'refunds', coalesce(
      (select jsonb_agg(to_jsonb(r) order by r.created_at, r.id) from refunds r), '[]'::jsonb)
  )
$$;

-- Delete (or, in a dry run, count) up to p_batch_size expired rows of one target. One short
-- transaction per call: rows locked by a concurrent writer are skipped (next batch or next run),
-- and a lock wait is bounded. Rows an open dispute still needs are kept: its purchase (status
-- 'disputed'), the purchase's refunds, charges, dispute and log lines.
--   processed_events: older than p_ledger_days (Stripe stops retrying after 3 days);
--   outbox:           sent more than p_ledger_days ago (pending rows are never purged);
--   payment_logs, purchases, refunds, charges, disputes, subscription_invoices (by last
--   update), ended subscriptions, erasures (by last request): older than p_retention_months;
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
  -- An open dispute needs the purchase, its refunds, charges, dispute and log lines.
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
    when 'charges' then
      v_table := 'charges'; v_key := 'id'; v_age := 'updated_at';
      v_due := 't.updated_at < $1 and not ' || v_disputed
               || 'and p.payment_intent_id = t.payment_intent_id)';
    when 'disputes' then
      v_table := 'disputes'; v_key := 'id'; v_age := 'updated_at';
      v_due := 't.updated_at < $1 and public._dispute_status_rank(t.status) = 3';
    when 'subscription_invoices' then
      v_table := 'subscription_invoices'; v_key := 'id'; v_age := 'updated_at';
      v_due := 't.updated_at < $1';
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

revoke all on function public._erasure_blocker(text) from public, anon, authenticated;
grant execute on function public._erasure_blocker(text) to service_role;
revoke all on function public.erase_member_data(text, text) from public, anon, authenticated;
grant execute on function public.erase_member_data(text, text) to service_role;
revoke all on function public.purge_expired_rows(text, integer, integer, integer, boolean)
  from public, anon, authenticated;
grant execute on function public.purge_expired_rows(text, integer, integer, integer, boolean)
  to service_role;
revoke all on function public.member_data_export() from public, anon, service_role;
grant execute on function public.member_data_export() to authenticated;
