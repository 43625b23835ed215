-- What python -m tools.doctor asks a deployed database: which migrations it has applied and
-- which tables of the API's schema run without row-level security. New function; replaces none.
--
-- Migrations are recorded by whoever applied them: the Supabase CLI (`supabase db push`) in
-- supabase_migrations.schema_migrations, `make migrate` in public.local_schema_migrations.
-- SECURITY DEFINER because the CLI's table is not readable by service_role; granted to
-- service_role alone, so a member's or the anon key's request is refused.

-- `make migrate` keeps its own record in public: were it ever run against a Supabase project,
-- that table would be readable through the API. RLS with no policy closes it to everyone but
-- its owner (the migration runner) and service_role.
alter table if exists public.local_schema_migrations enable row level security;

create or replace function public.schema_status() returns jsonb
language plpgsql stable security definer
set search_path = public, pg_temp
as $$
declare
  v_found text[];
  v_versions text[] := '{}';
  v_sources text[] := '{}';
begin
  if to_regclass('supabase_migrations.schema_migrations') is not null then
    execute 'select array_agg(version::text) from supabase_migrations.schema_migrations'
      into v_found;
    v_versions := v_versions || coalesce(v_found, '{}');
    v_sources := v_sources || 'supabase_migrations.schema_migrations'::text;
  end if;
  if to_regclass('public.local_schema_migrations') is not null then
    execute 'select array_agg(version::text) from public.local_schema_migrations' into v_found;
    v_versions := v_versions || coalesce(v_found, '{}');
    v_sources := v_sources || 'public.local_schema_migrations'::text;
  end if;
  return jsonb_build_object(
    'migrations_sources', to_jsonb(v_sources),
    'migrations', coalesce(
      (select jsonb_agg(distinct v order by v) from unnest(v_versions) v), '[]'::jsonb),
    'tables_without_rls', coalesce((
      select jsonb_agg(c.relname order by c.relname)
      from pg_class c
      where c.relnamespace = 'public'::regnamespace
        and c.relkind in ('r', 'p')
        and not c.relrowsecurity
    ), '[]'::jsonb)
  );
end
$$;

revoke all on function public.schema_status() from public, anon, authenticated;
grant execute on function public.schema_status() to service_role;
