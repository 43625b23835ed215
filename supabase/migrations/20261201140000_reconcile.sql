-- The reconciler (functions/reconcile, payments.reconcile): a scheduled job that performs
-- dispatches left pending, pushes Stripe events the worker never saw through the same
-- processing, corrects state that drifted from Stripe, and reports what it could not heal.
-- Replaces nothing.

-- Where the event catch-up stands, and the lease that keeps two runs from working at once.
create table if not exists public.reconcile_state (
  key        text primary key,
  value      jsonb not null,
  updated_at timestamptz not null default now()
);

-- One row per run: what it did, for the operators (GET /v1/admin/pipeline) and the alarms.
create table if not exists public.reconcile_runs (
  id          bigint generated always as identity primary key,
  started_at  timestamptz not null default now(),
  finished_at timestamptz,
  status      text not null default 'running'
              check (status in ('running', 'ok', 'partial', 'failed')),
  dry_run     boolean not null default false,
  figures     jsonb not null default '{}'::jsonb,
  error       text
);
create index if not exists reconcile_runs_started_at_idx
  on public.reconcile_runs (started_at desc);

do $$
declare
  t text;
begin
  foreach t in array array['reconcile_state', 'reconcile_runs'] loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on table public.%I from public, anon, authenticated', t);
    execute format('grant all on table public.%I to service_role', t);
  end loop;
end
$$;

-- Start a run unless another one holds the lease (a slow run and the next schedule): returns
-- {"run_id"}, or {"busy": true, "held_until"}. The lease outlives the function's timeout, so
-- a run that died frees it by itself.
create or replace function public.begin_reconcile_run(
  p_lease_seconds integer default 900,
  p_dry_run boolean default false
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_until timestamptz;
  v_run bigint;
begin
  insert into reconcile_state (key, value) values ('lease', '{}'::jsonb)
  on conflict (key) do nothing;
  select (value ->> 'until')::timestamptz into v_until
  from reconcile_state where key = 'lease' for update;
  if v_until is not null and v_until > now() and not p_dry_run then
    return jsonb_build_object('busy', true, 'held_until', v_until);
  end if;
  insert into reconcile_runs (dry_run) values (coalesce(p_dry_run, false))
  returning id into v_run;
  if not p_dry_run then
    update reconcile_state
    set value = jsonb_build_object(
          'until', now() + make_interval(secs => greatest(p_lease_seconds, 1)), 'run', v_run),
        updated_at = now()
    where key = 'lease';
  end if;
  return jsonb_build_object('run_id', v_run);
end
$$;

-- Record what a run did and free the lease.
create or replace function public.finish_reconcile_run(
  p_run_id bigint, p_status text, p_figures jsonb, p_error text default null
) returns void
language plpgsql
set search_path = public, pg_temp
as $$
begin
  update reconcile_runs
  set finished_at = now(), status = p_status, figures = coalesce(p_figures, '{}'::jsonb),
      error = left(p_error, 500)
  where id = p_run_id;
  update reconcile_state set value = '{}'::jsonb, updated_at = now()
  where key = 'lease' and (value ->> 'run')::bigint = p_run_id;
end
$$;

-- The Stripe event catch-up's watermark: events created before it were all seen.
create or replace function public.reconcile_watermark() returns timestamptz
language sql stable
set search_path = public, pg_temp
as $$
  select (value ->> 'created')::timestamptz from reconcile_state where key = 'events_watermark'
$$;

create or replace function public.save_reconcile_watermark(p_created timestamptz)
returns void
language sql
set search_path = public, pg_temp
as $$
  insert into reconcile_state (key, value, updated_at)
  values ('events_watermark', jsonb_build_object('created', p_created), now())
  on conflict (key) do update
  set value = excluded.value, updated_at = now()
  where (reconcile_state.value ->> 'created')::timestamptz is null
     or (reconcile_state.value ->> 'created')::timestamptz < p_created
$$;

-- Which of these Stripe event ids the ledger has not seen.
create or replace function public.unseen_events(p_ids jsonb) returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  select coalesce(jsonb_agg(id order by id), '[]'::jsonb)
  from jsonb_array_elements_text(coalesce(p_ids, '[]'::jsonb)) as t(id)
  where not exists (select 1 from processed_events p where p.event_id = t.id)
$$;

-- Lease pending dispatches older than p_min_age_seconds (their own event's delivery had its
-- chance), oldest first, with the worker's lease rules: a row another worker holds is skipped.
create or replace function public.claim_due_dispatches(
  p_min_age_seconds integer default 300,
  p_limit integer default 50,
  p_lease_seconds integer default 120
) returns jsonb
language sql
set search_path = public, pg_temp
as $$
  with picked as (
    select id from outbox
    where status = 'pending'
      and created_at <= now() - make_interval(secs => greatest(p_min_age_seconds, 0))
      and (locked_until is null or locked_until < now())
    order by created_at, id
    limit least(greatest(coalesce(p_limit, 50), 1), 500)
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
                            order by created_at, id), '[]'::jsonb)
  from claimed
$$;

-- Objects whose state may have drifted from Stripe's, to re-read: checkouts still open or
-- settling past their session's expiry, live subscriptions whose period ended, refunds still
-- pending after p_refund_age_seconds.
create or replace function public.reconcile_candidates(
  p_limit integer default 50,
  p_refund_age_seconds integer default 3600
) returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  select jsonb_build_object(
    'sessions', coalesce((
      select jsonb_agg(checkout_session_id order by created_at)
      from (select checkout_session_id, created_at from purchases
            where (payment_status = 'open'
                   and coalesce(expires_at, created_at + interval '24 hours') < now())
               or (payment_status = 'processing' and updated_at < now() - interval '1 day')
            order by created_at
            limit least(greatest(coalesce(p_limit, 50), 1), 500)) s), '[]'::jsonb),
    'subscriptions', coalesce((
      select jsonb_agg(id order by current_period_end)
      from (select id, current_period_end from subscriptions
            where status in ('active', 'trialing', 'past_due', 'paused')
              and current_period_end < now()
            order by current_period_end
            limit least(greatest(coalesce(p_limit, 50), 1), 500)) s), '[]'::jsonb),
    'refunds', coalesce((
      select jsonb_agg(id order by updated_at)
      from (select id, updated_at from refunds
            where status in ('pending', 'requires_action') and id like 're\_%'
              and updated_at < now() - make_interval(secs => greatest(p_refund_age_seconds, 0))
            order by updated_at
            limit least(greatest(coalesce(p_limit, 50), 1), 500)) r), '[]'::jsonb))
$$;

-- What an operator needs to see of the pipeline (DLQ depth comes from SQS, not from here).
create or replace function public.pipeline_status() returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  select jsonb_build_object(
    'dispatches', jsonb_build_object(
      'pending', (select count(*) from outbox where status = 'pending'),
      'oldest_pending_age_seconds', (
        select floor(extract(epoch from now() - min(created_at)))::bigint
        from outbox where status = 'pending'),
      'by_kind', coalesce((
        select jsonb_object_agg(kind, n)
        from (select kind, count(*) as n from outbox where status = 'pending'
              group by kind) k), '{}'::jsonb)),
    'last_reconcile', (
      select jsonb_build_object(
        'started_at', r.started_at, 'finished_at', r.finished_at, 'status', r.status,
        'events_healed', coalesce((r.figures ->> 'events_healed')::int, 0),
        'dispatches_drained', coalesce((r.figures ->> 'dispatches_drained')::int, 0),
        'drift_corrected', coalesce((r.figures ->> 'drift_corrected')::int, 0),
        'stuck', coalesce((r.figures ->> 'stuck')::int, 0))
      from reconcile_runs r
      where not r.dry_run and r.finished_at is not null
      order by r.started_at desc
      limit 1))
$$;

-- Dispatches a person must look at: pending for longer than p_age_seconds, or tried
-- p_attempts times without being accepted.
create or replace function public.stuck_dispatches(
  p_age_seconds integer default 3600, p_attempts integer default 10
) returns integer
language sql stable
set search_path = public, pg_temp
as $$
  select count(*)::integer from outbox
  where status = 'pending'
    and (created_at < now() - make_interval(secs => greatest(p_age_seconds, 0))
         or attempts >= p_attempts)
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.stuck_dispatches(integer, integer)',
    'public.begin_reconcile_run(integer, boolean)',
    'public.finish_reconcile_run(bigint, text, jsonb, text)',
    'public.reconcile_watermark()',
    'public.save_reconcile_watermark(timestamptz)',
    'public.unseen_events(jsonb)',
    'public.claim_due_dispatches(integer, integer, integer)',
    'public.reconcile_candidates(integer, integer)',
    'public.pipeline_status()'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
