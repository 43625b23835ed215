-- Admin payment search (GET /v1/admin/payments): payments with their refunds and the amount
-- still refundable, newest first, one keyset page at a time.
--
-- Replaces no earlier function. A "payment" is a purchase that took money or is taking it
-- (a checkout that was only started, expired or was declined is not one): statuses
-- processing, paid, partially_refunded, refunded, disputed and switched.
--
-- The refundable amount follows reserve_refund (20261126000600): refunds Stripe accepted or may
-- still complete and reservations still in flight count against the amount paid, or the
-- purchase's own amount_refunded when that says more; only a paid or partially refunded
-- purchase has anything left. reserve_refund stays the authority (it also asks Stripe); this
-- figure is what our records show when the admin opens the payment.

-- Keyset order of the search: newest first, the id breaking ties between equal timestamps.
create index if not exists purchases_created_at_id_idx
  on public.purchases (created_at desc, id desc);

-- What is left to refund of one purchase, by our records.
create or replace function public._refundable_amount(
  p_purchase purchases, p_reservation_ttl_seconds integer default 600
) returns bigint
language sql stable
set search_path = public, pg_temp
as $$
  select case
    when p_purchase.status not in ('paid', 'partially_refunded') then 0
    else greatest(
      p_purchase.amount - greatest(
        coalesce((select sum(r.amount) from refunds r
                  where r.payment_intent_id = p_purchase.payment_intent_id
                    and public._refund_counts(r.status, r.updated_at,
                                              p_reservation_ttl_seconds)), 0),
        p_purchase.amount_refunded),
      0)
  end
$$;

-- One page of payments matching every filter given (null: no filter on it). p_from is
-- inclusive, p_to exclusive; p_before_created and p_before_id are the last row of the previous
-- page. Returns a JSON array of at most p_limit (1..101) payments, each with its refunds
-- newest first; reservations still waiting for Stripe are not refunds yet and are not listed.
create or replace function public.admin_payments(
  p_member text default null,
  p_payment_intent text default null,
  p_from timestamptz default null,
  p_to timestamptz default null,
  p_before_created timestamptz default null,
  p_before_id bigint default null,
  p_limit integer default 20,
  p_reservation_ttl_seconds integer default 600
) returns jsonb
language sql stable
set search_path = public, pg_temp
as $$
  with page as (
    select p from purchases p
    where p.payment_intent_id is not null
      and p.status in ('processing', 'paid', 'partially_refunded', 'refunded', 'disputed',
                       'switched')
      and (p_member is null or p.member_id = p_member)
      and (p_payment_intent is null or p.payment_intent_id = p_payment_intent)
      and (p_from is null or p.created_at >= p_from)
      and (p_to is null or p.created_at < p_to)
      and (p_before_created is null
           or (p.created_at, p.id) < (p_before_created, coalesce(p_before_id, 0)))
    order by p.created_at desc, p.id desc
    limit least(greatest(coalesce(p_limit, 20), 1), 101)
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', (page.p).id,
           'payment_intent', (page.p).payment_intent_id,
           'checkout_session', (page.p).checkout_session_id,
           'member_id', (page.p).member_id,
           'product', (page.p).product,
           'amount', (page.p).amount,
           'currency', (page.p).currency,
           'status', (page.p).status,
           'amount_refunded', (page.p).amount_refunded,
           'refundable', public._refundable_amount(page.p, p_reservation_ttl_seconds),
           'switch_from', (page.p).switch_from,
           'created_at', (page.p).created_at,
           'updated_at', (page.p).updated_at,
           'refunds', coalesce(
             (select jsonb_agg(public._refund_view(r) order by r.created_at desc, r.id desc)
              from refunds r
              where r.payment_intent_id = (page.p).payment_intent_id
                and r.status <> 'requested'),
             '[]'::jsonb))
         order by (page.p).created_at desc, (page.p).id desc), '[]'::jsonb)
  from page
$$;

-- Service role only: as the service role the search sees every member's payments, and no
-- member may call it. Supabase's default privileges grant new functions to anon,
-- authenticated and service_role: take that back.
revoke all on function public._refundable_amount(public.purchases, integer)
  from public, anon, authenticated;
grant execute on function public._refundable_amount(public.purchases, integer) to service_role;
revoke all on function public.admin_payments(text, text, timestamptz, timestamptz, timestamptz,
                                             bigint, integer, integer)
  from public, anon, authenticated;
grant execute on function public.admin_payments(text, text, timestamptz, timestamptz,
                                                timestamptz, bigint, integer, integer)
  to service_role;
