-- Who owns a subscription, and which Stripe customer a member's Billing Portal opens.
--
-- Replaces subscription_access (20261126000700_subscriptions.sql). The old body answered with
-- the member's *mapped* customer (customers, the first customer the worker saw for them) and
-- the caller required Stripe's subscription to be billed to it. A first-time member's Checkout
-- sessions carry no customer, so two sessions in flight (a one-time purchase and a plan, or two
-- tabs) create two Stripe customers, and only the first is mapped: a plan billed to the other
-- one answered 404 to its own member, who could then neither cancel, pause nor change it. Now
-- our subscriptions row decides: its member_id (written by the worker from the metadata our
-- checkout put on the subscription) is the owner, and its stripe_customer_id is the customer
-- Stripe's subscription must be billed to. A subscription our row does not know yet is tied by
-- its checkout (purchases.subscription_id, from checkout.session.completed) or, when the worker
-- has seen nothing of it, checked by the caller against Stripe's own record (the member named in
-- its metadata, or the member's mapped customer for one that names nobody).
--
-- Adds billing_portal_customer: the portal opens the customer of the member's live subscription
-- (where its card and invoices are, and where a failed renewal is fixed), else the mapped one.

create or replace function public.subscription_access(p_member_id text, p_subscription_id text)
returns jsonb
language plpgsql stable
set search_path = public, pg_temp
as $$
declare
  v_row subscriptions;
  v_mapped text;
  v_checkout_member text;
begin
  select stripe_customer_id into v_mapped from customers where member_id = p_member_id;
  select * into v_row from subscriptions where id = p_subscription_id;
  if v_row.id is not null then
    return jsonb_build_object(
      -- A row naming nobody (a subscription made outside our checkout whose customer was not
      -- mapped when its event came) belongs to the member whose customer it is billed to.
      'allowed', coalesce(v_row.member_id = p_member_id,
                          v_mapped is not null and v_row.stripe_customer_id = v_mapped),
      'customer_id', v_row.stripe_customer_id,
      'member_customer', v_mapped);
  end if;
  select member_id into v_checkout_member from purchases
  where subscription_id = p_subscription_id and mode = 'subscription' and member_id is not null
  order by id limit 1;
  return jsonb_build_object(
    'allowed', v_checkout_member is null or v_checkout_member = p_member_id,
    'customer_id', null,
    'member_customer', v_mapped);
end
$$;

-- The Stripe customer whose Billing Portal a member gets: the customer of their live
-- subscription (a past_due one first: its card is what needs fixing), never one the worker is
-- cancelling as a duplicate; else the member's mapped customer; null when we know none.
create or replace function public.billing_portal_customer(p_member_id text)
returns text
language sql stable
set search_path = public, pg_temp
as $$
  select coalesce(
    (select s.stripe_customer_id
     from subscriptions s
     where s.member_id = p_member_id
       and s.status in ('active', 'trialing', 'past_due', 'paused')
       and s.stripe_customer_id not like 'erased:%'
       and not exists (select 1 from purchases o
                       where o.subscription_id = s.id and o.duplicate)
     order by s.status = 'past_due' desc, s.created_at desc, s.id
     limit 1),
    (select stripe_customer_id from customers where member_id = p_member_id))
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.subscription_access(text, text)',
    'public.billing_portal_customer(text)'
  ]
  loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;
