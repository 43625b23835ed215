-- State the service keeps beside payment_logs: the processed-event ledger, the member <->
-- Stripe customer mapping, purchases, subscriptions, refunds and the outbox of side effects
-- (Make.com dispatches, follow-up Stripe calls) written in the same transaction as the state.

-- Ledger of Stripe event ids that took effect. The primary key is what makes a duplicate
-- delivery (Stripe retry, SQS redelivery, two workers racing) a no-op.
create table if not exists public.processed_events (
  event_id      text primary key,
  event_type    text not null,
  object_id     text,
  event_created timestamptz not null,
  outcome       text not null check (outcome in ('applied', 'ignored', 'stale')),
  processed_at  timestamptz not null default now()
);
create index if not exists processed_events_processed_at_idx
  on public.processed_events (processed_at);

create table if not exists public.customers (
  member_id          text primary key,
  stripe_customer_id text not null unique,
  created_at         timestamptz not null default now()
);

create table if not exists public.purchases (
  id                  bigint generated always as identity primary key,
  checkout_session_id text not null unique,
  payment_intent_id   text unique,
  member_id           text,
  product             text not null,
  amount              bigint not null,
  currency            text not null,
  amount_refunded     bigint not null default 0 check (amount_refunded >= 0),
  status              text not null check (status in (
                        'open', 'processing', 'paid', 'failed', 'expired',
                        'partially_refunded', 'refunded', 'disputed', 'switched')),
  switch_from         text,
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now()
);
create index if not exists purchases_member_id_idx on public.purchases (member_id, created_at desc);
create index if not exists purchases_created_at_idx on public.purchases (created_at);

create table if not exists public.subscriptions (
  id                   text primary key,
  member_id            text,
  stripe_customer_id   text not null,
  product              text,
  price_id             text,
  status               text not null,
  cancel_at_period_end boolean not null default false,
  pause_behavior       text,
  resumes_at           timestamptz,
  current_period_end   timestamptz,
  -- event.created of the newest event applied: older deliveries never overwrite newer state.
  state_as_of          timestamptz not null,
  created_at           timestamptz not null default now(),
  updated_at           timestamptz not null default now()
);
create index if not exists subscriptions_member_id_idx on public.subscriptions (member_id);

create table if not exists public.refunds (
  id                text primary key,
  payment_intent_id text not null,
  member_id         text,
  amount            bigint not null check (amount > 0),
  currency          text not null,
  status            text not null,
  reason            text,
  note              text,
  requested_by      text,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);
create index if not exists refunds_payment_intent_idx on public.refunds (payment_intent_id);
create index if not exists refunds_created_at_idx on public.refunds (created_at);

-- Side effects to perform after the state is committed, at most once each once accepted.
create table if not exists public.outbox (
  id          bigint generated always as identity primary key,
  kind        text not null,
  dedupe_key  text not null unique,
  event_id    text,
  payload     jsonb not null,
  status      text not null default 'pending' check (status in ('pending', 'sent')),
  attempts    integer not null default 0,
  last_error  text,
  created_at  timestamptz not null default now(),
  sent_at     timestamptz
);
create index if not exists outbox_pending_idx on public.outbox (event_id) where status = 'pending';

-- Row-level security: members read their own rows; only the service role writes.
do $$
declare
  t text;
begin
  foreach t in array array['processed_events', 'customers', 'purchases', 'subscriptions',
                           'refunds', 'outbox']
  loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on table public.%I from public, anon, authenticated', t);
    execute format('grant all on table public.%I to service_role', t);
  end loop;
  foreach t in array array['customers', 'purchases', 'subscriptions', 'refunds']
  loop
    execute format('grant select on table public.%I to authenticated', t);
    execute format('drop policy if exists %I on public.%I', t || '_member_read', t);
    execute format(
      'create policy %I on public.%I for select to authenticated '
      'using (member_id = (auth.jwt() ->> ''sub''))', t || '_member_read', t);
  end loop;
end
$$;
