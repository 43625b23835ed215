-- Stand-ins for what a Supabase project already has, for a plain PostgreSQL (local dev, tests).
-- Applied by `make migrate` only when auth.jwt() is missing; never on Supabase itself.
-- They behave like Supabase's: auth.jwt() reads the claims PostgREST puts in
-- request.jwt.claims, and service_role bypasses row-level security.

-- Roles are cluster-wide: tolerate a concurrent bootstrap of another database.
do $$
declare
  r record;
begin
  for r in select * from (values ('anon', 'nologin noinherit'),
                                 ('authenticated', 'nologin noinherit'),
                                 ('service_role', 'nologin noinherit bypassrls')) v(name, opts)
  loop
    if not exists (select 1 from pg_roles where rolname = r.name) then
      begin
        execute format('create role %I %s', r.name, r.opts);
      exception when duplicate_object or unique_violation then
        null;
      end;
    end if;
  end loop;
end
$$;

-- The connecting user switches to these roles (SET ROLE) the way PostgREST does.
grant anon, authenticated, service_role to current_user;

create schema if not exists auth;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create or replace function auth.uid() returns text
language sql stable
as $$ select auth.jwt() ->> 'sub' $$;

create or replace function auth.role() returns text
language sql stable
as $$ select auth.jwt() ->> 'role' $$;

grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

-- Supabase's default privileges in schema public: what the migration role creates is granted
-- to anon, authenticated and service_role unless a migration takes it back (it does).
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
