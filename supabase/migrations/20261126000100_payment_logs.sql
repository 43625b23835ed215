-- payment_logs: the audit trail of every money-related event (public contract, DESIGN.md §5).
-- Members read their own rows under RLS; only the service role writes.

create table if not exists public.payment_logs (
  id               bigint generated always as identity primary key,
  created_at       timestamptz not null default now(),
  event_type       text        not null,
  user_id          text,
  amount           bigint,
  currency         text,
  status           text,
  stripe_event_id  text,
  stripe_object_id text,
  metadata         jsonb       not null default '{}'::jsonb,
  constraint payment_logs_stripe_event_id_key unique (stripe_event_id)
);

create index if not exists payment_logs_user_id_created_at_idx
  on public.payment_logs (user_id, created_at desc);
create index if not exists payment_logs_created_at_idx
  on public.payment_logs (created_at);

alter table public.payment_logs enable row level security;

-- Supabase grants every new table to anon and authenticated by default; take that back and
-- grant only what the policies below allow.
revoke all on table public.payment_logs from public, anon, authenticated;
grant select on table public.payment_logs to authenticated;
grant all on table public.payment_logs to service_role;

drop policy if exists payment_logs_member_read on public.payment_logs;
create policy payment_logs_member_read on public.payment_logs
  for select to authenticated
  using (user_id = (auth.jwt() ->> 'sub'));
