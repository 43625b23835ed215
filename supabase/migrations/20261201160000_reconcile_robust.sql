-- The reconciler under an outage, poison rows and drift (payments.reconcile).
--
-- claim_next_dispatch (new): the outbox drain leases one row at a time, each with its own
-- lease, walking the due rows oldest first from a cursor. A failed row is released at once
-- (release_outbox_dispatch) and, with claim_due_dispatches, was claimed again by the same run
-- before the rows behind it; the cursor makes every due row tried at most once a run. Kinds a
-- run gave up on (Make.com down) are skipped so the rest of the outbox still drains.
--
-- begin_reconcile_run (replaces 20261201140000's): a run whose lease ran out without
-- finish_reconcile_run (the function was killed at its timeout) is recorded as failed by the
-- next run, and returned as "abandoned", so it is reported instead of staying "running".
--
-- reconcile_candidates (replaces 20261201140000's): candidates least recently re-read come
-- first, so objects that stay candidates (a bank debit still settling) cannot crowd out new
-- ones. record_drift_checks (new) keeps, per object, when it was last re-read and how many runs
-- in a row re-read it without anything applied, in reconcile_state rows keyed
-- 'drift:<kind>:<id>'.

create or replace function public.claim_next_dispatch(
  p_min_age_seconds integer default 300,
  p_after_created timestamptz default null,
  p_after_id bigint default null,
  p_skip_kinds jsonb default '[]'::jsonb,
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
      and (p_after_created is null
           or (created_at, id) > (p_after_created, coalesce(p_after_id, 0)))
      and kind not in (select jsonb_array_elements_text(coalesce(p_skip_kinds, '[]'::jsonb)))
    order by created_at, id
    limit 1
    for update skip locked
  ), claimed as (
    update outbox o
    set attempts = o.attempts + 1,
        locked_until = now() + make_interval(secs => greatest(p_lease_seconds, 1))
    from picked
    where o.id = picked.id
    returning o.id, o.kind, o.dedupe_key, o.event_id, o.payload, o.attempts, o.created_at
  )
  select jsonb_build_object('id', id, 'kind', kind, 'dedupe_key', dedupe_key,
                            'event_id', event_id, 'payload', payload,
                            'attempts', attempts, 'created_at', created_at)
  from claimed
$$;

-- Start a run unless another one holds the lease (a slow run and the next schedule): returns
-- {"run_id", "abandoned"?}, or {"busy": true, "held_until", "held_by"}. The lease is the
-- function's timeout and a margin, so a run that was killed frees it before the next schedule;
-- that run is then marked failed here (it never recorded its end) and named in "abandoned".
create or replace function public.begin_reconcile_run(
  p_lease_seconds integer default 900,
  p_dry_run boolean default false
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_until timestamptz;
  v_holder bigint;
  v_run bigint;
  v_abandoned bigint;
begin
  insert into reconcile_state (key, value) values ('lease', '{}'::jsonb)
  on conflict (key) do nothing;
  select (value ->> 'until')::timestamptz, (value ->> 'run')::bigint into v_until, v_holder
  from reconcile_state where key = 'lease' for update;
  if v_until is not null and v_until > now() and not p_dry_run then
    return jsonb_build_object('busy', true, 'held_until', v_until, 'held_by', v_holder);
  end if;
  if v_holder is not null and not p_dry_run then
    update reconcile_runs
    set status = 'failed', finished_at = now(),
        error = 'the run ended without recording its end (killed at its timeout?)'
    where id = v_holder and status = 'running'
    returning id into v_abandoned;
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
  return jsonb_strip_nulls(jsonb_build_object('run_id', v_run, 'abandoned', v_abandoned));
end
$$;

-- Objects whose state may have drifted from Stripe's, to re-read: checkouts still open or
-- settling past their session's expiry, live subscriptions whose period ended, refunds still
-- pending after p_refund_age_seconds. Within each kind, the objects never re-read or re-read
-- longest ago come first (record_drift_checks), then the oldest.
create or replace function public.reconcile_candidates(
  p_limit integer default 50,
  p_refund_age_seconds integer default 3600
) returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  with checks as (
    select substr(key, 7) as ref, updated_at as checked_at
    from reconcile_state where key like 'drift:%'
  )
  select jsonb_build_object(
    'sessions', coalesce((
      select jsonb_agg(checkout_session_id order by checked_at nulls first, created_at)
      from (select p.checkout_session_id, p.created_at, c.checked_at from purchases p
            left join checks c on c.ref = 'checkout_session:' || p.checkout_session_id
            where (p.payment_status = 'open'
                   and coalesce(p.expires_at, p.created_at + interval '24 hours') < now())
               or (p.payment_status = 'processing' and p.updated_at < now() - interval '1 day')
            order by c.checked_at nulls first, p.created_at
            limit least(greatest(coalesce(p_limit, 50), 1), 500)) s), '[]'::jsonb),
    'subscriptions', coalesce((
      select jsonb_agg(id order by checked_at nulls first, current_period_end)
      from (select s.id, s.current_period_end, c.checked_at from subscriptions s
            left join checks c on c.ref = 'subscription:' || s.id
            where s.status in ('active', 'trialing', 'past_due', 'paused')
              and s.current_period_end < now()
            order by c.checked_at nulls first, s.current_period_end
            limit least(greatest(coalesce(p_limit, 50), 1), 500)) s), '[]'::jsonb),
    'refunds', coalesce((
      select jsonb_agg(id order by checked_at nulls first, updated_at)
      from (select r.id, r.updated_at, c.checked_at from refunds r
            left join checks c on c.ref = 'refund:' || r.id
            where r.status in ('pending', 'requires_action') and r.id like 're\_%'
              and r.updated_at < now() - make_interval(secs => greatest(p_refund_age_seconds, 0))
            order by c.checked_at nulls first, r.updated_at
            limit least(greatest(coalesce(p_limit, 50), 1), 500)) r), '[]'::jsonb))
$$;

-- What one run's drift check found: p_checks is [{"kind", "id", "unchanged": bool}, …].
-- An object re-read with nothing applied counts one more run; anything else (a correction
-- applied, Stripe itself still settling it) starts again from 0. Returns how many of these
-- objects have now been re-read p_stuck_after runs in a row with nothing applied. Checks not
-- renewed for a week (the object stopped being a candidate) are forgotten.
create or replace function public.record_drift_checks(
  p_checks jsonb, p_stuck_after integer default 4
) returns integer
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_stuck integer;
begin
  delete from reconcile_state
  where key like 'drift:%' and updated_at < now() - interval '7 days';
  with seen as (
    select 'drift:' || (c ->> 'kind') || ':' || (c ->> 'id') as key,
           coalesce((c ->> 'unchanged')::boolean, false) as unchanged
    from jsonb_array_elements(coalesce(p_checks, '[]'::jsonb)) as t(c)
  ), unique_seen as (
    -- One row per object: an upsert may not touch the same row twice.
    select key, bool_and(unchanged) as unchanged from seen group by key
  ), saved as (
    insert into reconcile_state (key, value, updated_at)
    select key, jsonb_build_object('unchanged', case when unchanged then 1 else 0 end), now()
    from unique_seen
    on conflict (key) do update
    set value = jsonb_build_object(
          'unchanged',
          case when (excluded.value ->> 'unchanged')::int = 1
               then coalesce((reconcile_state.value ->> 'unchanged')::int, 0) + 1
               else 0 end),
        updated_at = now()
    returning (value ->> 'unchanged')::int as unchanged
  )
  select count(*)::integer into v_stuck from saved
  where unchanged >= greatest(coalesce(p_stuck_after, 4), 1);
  return v_stuck;
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.claim_next_dispatch(integer, timestamptz, bigint, jsonb, integer)',
    'public.begin_reconcile_run(integer, boolean)',
    'public.reconcile_candidates(integer, integer)',
    'public.record_drift_checks(jsonb, integer)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
