-- Checkout: the member <-> Stripe customer mapping and the record of each session we create.

create or replace function public.customer_for_member(p_member_id text) returns text
language sql stable
set search_path = public, pg_temp
as $$ select stripe_customer_id from customers where member_id = p_member_id $$;

-- Store the mapping once; a concurrent request that created the same mapping wins the race
-- and both callers get the stored id, so a member never ends up with two customers here.
create or replace function public.save_customer(p_member_id text, p_stripe_customer_id text)
returns text
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_id text;
begin
  insert into customers (member_id, stripe_customer_id)
  values (p_member_id, p_stripe_customer_id)
  on conflict (member_id) do nothing;
  select stripe_customer_id into v_id from customers where member_id = p_member_id;
  return v_id;
end
$$;

-- Whether the member holds a purchase of this product that still counts as owned.
create or replace function public.member_owns_product(p_member_id text, p_product text)
returns boolean
language sql stable
set search_path = public, pg_temp
as $$
  select exists (
    select 1 from purchases
    where member_id = p_member_id and product = p_product
      and status in ('paid', 'partially_refunded', 'processing', 'disputed')
  )
$$;

-- Record a session we created (status open) and log it once. A replayed idempotent request
-- returns the same session; it must not log twice.
create or replace function public.record_checkout_session(
  p_checkout_session_id text,
  p_member_id text,
  p_product text,
  p_amount bigint,
  p_currency text,
  p_switch_from text default null,
  p_metadata jsonb default '{}'::jsonb
) returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_id bigint;
begin
  insert into purchases (checkout_session_id, member_id, product, amount, currency, status,
                         switch_from)
  values (p_checkout_session_id, p_member_id, p_product, p_amount, p_currency, 'open',
          p_switch_from)
  on conflict (checkout_session_id) do nothing
  returning id into v_id;
  if v_id is not null then
    insert into payment_logs (event_type, user_id, amount, currency, status, stripe_object_id,
                              metadata)
    values ('checkout.session.created', p_member_id, p_amount, p_currency, 'open',
            p_checkout_session_id, coalesce(p_metadata, '{}'::jsonb));
  end if;
  return jsonb_build_object('created', v_id is not null);
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.customer_for_member(text)',
    'public.save_customer(text, text)',
    'public.member_owns_product(text, text)',
    'public.record_checkout_session(text, text, text, bigint, text, text, jsonb)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
