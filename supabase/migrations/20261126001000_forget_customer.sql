-- Forget a member's Stripe customer that Stripe no longer knows (deleted in the Dashboard,
-- or a database restored against another Stripe account), so checkout can create a new one.
-- Only that exact mapping is removed: a concurrent request that already replaced it keeps
-- the replacement.

create or replace function public.forget_customer(p_member_id text, p_stripe_customer_id text)
returns boolean
language sql
set search_path = public, pg_temp
as $$
  with gone as (
    delete from customers
    where member_id = p_member_id and stripe_customer_id = p_stripe_customer_id
    returning 1
  )
  select exists (select 1 from gone)
$$;

revoke all on function public.forget_customer(text, text) from public, anon, authenticated;
grant execute on function public.forget_customer(text, text) to service_role;
