"""Commerce events -> Klaviyo metrics: product actions, purchases (order + products), promotions.

Property names follow Klaviyo's e-commerce conventions (OrderId, Items, ProductName ...), so
Klaviyo's built-in flows and reports recognise them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mparticle_klaviyo.mparticle.model import Commerce, Item

PRODUCT_ACTION_METRICS = {
    "add_to_cart": "Added to Cart",
    "remove_from_cart": "Removed from Cart",
    "checkout": "Started Checkout",
    "checkout_option": "Checkout Option",
    "click": "Clicked Product",
    "view_detail": "Viewed Product",
    "add_to_wishlist": "Added to Wishlist",
    "remove_from_wishlist": "Removed from Wishlist",
    "remove_from_wish_list": "Removed from Wishlist",
    "refund": "Refunded Order",
    "purchase": "Placed Order",
}
PROMOTION_METRICS = {"view": "Viewed Promotion", "click": "Clicked Promotion"}
IMPRESSION_METRIC = "Viewed Impression"
ORDERED_PRODUCT_METRIC = "Ordered Product"


class CommerceMetric(msgspec.Struct, frozen=True):
    """One Klaviyo event derived from a commerce event; ``suffix`` extends its unique id."""

    metric: str
    properties: dict[str, Any]
    value: float | None
    suffix: str = ""


def commerce_metrics(commerce: Commerce, attributes: dict[str, Any]) -> list[CommerceMetric] | None:
    """The Klaviyo events for one commerce event, or None when its action is not supported."""
    if commerce.kind == "promotion":
        metric = PROMOTION_METRICS.get(commerce.action.lower())
        if metric is None:
            return None
        promotions = [_promotion(p) for p in commerce.promotions]
        return [CommerceMetric(metric, {"Promotions": promotions, **attributes}, None)]
    if commerce.kind == "impression":
        impressions = [{"ListName": i.list_name, "Items": [_item(p) for p in i.items]} for i in commerce.impressions]
        return [CommerceMetric(IMPRESSION_METRIC, {"Impressions": _clean_list(impressions), **attributes}, None)]
    return _product_action(commerce, attributes)


def _product_action(commerce: Commerce, attributes: dict[str, Any]) -> list[CommerceMetric] | None:
    """A product action; a purchase also yields one ``Ordered Product`` per product."""
    action = commerce.action.lower()
    metric = PRODUCT_ACTION_METRICS.get(action)
    if metric is None:
        return None
    properties = {**_order_fields(commerce), **attributes}
    events = [CommerceMetric(metric, properties, _order_value(commerce))]
    if action == "purchase":
        events.extend(
            CommerceMetric(
                ORDERED_PRODUCT_METRIC,
                _ordered_product(commerce, item, attributes),
                item_total(item),
                f":{n}",
            )
            for n, item in enumerate(commerce.items)
        )
    return events


def _order_fields(commerce: Commerce) -> dict[str, Any]:
    """Transaction fields and the product list of an order or cart event."""
    fields = {
        "OrderId": commerce.transaction_id,
        "Affiliation": commerce.affiliation,
        "Tax": commerce.tax_amount,
        "Shipping": commerce.shipping_amount,
        "CouponCode": commerce.coupon_code,
        "ItemNames": [i.name for i in commerce.items if i.name] or None,
        "Brands": sorted({i.brand for i in commerce.items if i.brand}) or None,
        "Categories": sorted({i.category for i in commerce.items if i.category}) or None,
        "Items": [_item(i) for i in commerce.items] or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _order_value(commerce: Commerce) -> float | None:
    """The order's total amount, else the sum of its product totals (None if unknown)."""
    if commerce.total_amount is not None:
        return commerce.total_amount
    totals = [item_total(i) for i in commerce.items]
    known = [t for t in totals if t is not None]
    return sum(known) if known else None


def item_total(item: Item) -> float | None:
    """A product's total: its own total, else price x quantity (quantity 1 when absent)."""
    if item.total is not None:
        return item.total
    if item.price is None:
        return None
    return item.price * (item.quantity if item.quantity is not None else 1)


def _item(item: Item) -> dict[str, Any]:
    """One entry of an ``Items`` list."""
    fields = {
        "ProductID": item.id,
        "ProductName": item.name,
        "Brand": item.brand,
        "Categories": [item.category] if item.category else None,
        "Variant": item.variant,
        "Position": item.position,
        "ItemPrice": item.price,
        "Quantity": item.quantity,
        "RowTotal": item_total(item),
        "CouponCode": item.coupon_code,
    }
    return {**{k: v for k, v in fields.items() if v is not None}, **item.attributes}


def _ordered_product(commerce: Commerce, item: Item, attributes: dict[str, Any]) -> dict[str, Any]:
    """Properties of one ``Ordered Product`` event."""
    fields = {"OrderId": commerce.transaction_id, **_item(item)}
    return {**{k: v for k, v in fields.items() if v is not None}, **attributes}


def _promotion(promotion: Any) -> dict[str, Any]:
    fields = {
        "PromotionID": promotion.id,
        "PromotionName": promotion.name,
        "Creative": promotion.creative,
        "Position": promotion.position,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _clean_list(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if v is not None} for e in entries]
