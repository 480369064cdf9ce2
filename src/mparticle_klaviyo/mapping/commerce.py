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


def commerce_metrics(
    commerce: Commerce, attributes: dict[str, Any], shadowed: list[str]
) -> list[CommerceMetric] | None:
    """The Klaviyo events for one commerce event, or None when its action is not supported.

    Fields derived from the commerce payload win over custom attributes of the same name, and
    a product's attributes over the event's; each attribute left out is described in ``shadowed``.
    """
    metric = commerce_metric(commerce)
    if metric is None:
        return None
    if commerce.kind == "promotion":
        fields = {"Promotions": [_promotion(p) for p in commerce.promotions]}
        return [CommerceMetric(metric, _merge(fields, attributes, "event", shadowed), None)]
    if commerce.kind == "impression":
        impressions = [
            {"ListName": i.list_name, "Items": [_item(p, shadowed) for p in i.items]} for i in commerce.impressions
        ]
        fields = {"Impressions": _clean_list(impressions)}
        return [CommerceMetric(IMPRESSION_METRIC, _merge(fields, attributes, "event", shadowed), None)]
    return _product_action(commerce, metric, attributes, shadowed)


def commerce_metric(commerce: Commerce) -> str | None:
    """The metric of a commerce event's first Klaviyo event, or None when its action is not supported."""
    action = commerce.action.lower()
    if commerce.kind == "promotion":
        return PROMOTION_METRICS.get(action)
    if commerce.kind == "impression":
        return IMPRESSION_METRIC
    return PRODUCT_ACTION_METRICS.get(action)


def _product_action(
    commerce: Commerce, metric: str, attributes: dict[str, Any], shadowed: list[str]
) -> list[CommerceMetric]:
    """A product action; a purchase also yields one ``Ordered Product`` per product."""
    action = commerce.action.lower()
    products = [_item_fields(i) for i in commerce.items]  # once each, for Items and Ordered Product
    items = [_merge(f, i.attributes, "product", shadowed) for f, i in zip(products, commerce.items, strict=True)]
    properties = _merge(_order_fields(commerce, items), attributes, "event", shadowed)
    events = [CommerceMetric(metric, properties, _order_value(commerce))]
    if action == "purchase":
        tid = commerce.transaction_id
        events.extend(
            CommerceMetric(
                ORDERED_PRODUCT_METRIC,
                _ordered_product(tid, fields, item.attributes, attributes, shadowed),
                fields.get("RowTotal"),
                f":{n}",
            )
            for n, (fields, item) in enumerate(zip(products, commerce.items, strict=True))
        )
    return events


def _merge(
    fields: dict[str, Any],
    attributes: dict[str, Any],
    source: str,
    shadowed: list[str],
    derived: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``fields`` plus the custom ``attributes`` whose names they do not already hold.

    ``derived`` (default: all of ``fields``) are the commerce fields, for naming the winner.
    """
    if not attributes:
        return fields  # every caller passes a dict of its own: no copy needed
    merged = {**fields, **attributes}
    if len(merged) == len(fields) + len(attributes):
        return merged  # no name in common: the common case, checked without a loop
    derived = fields if derived is None else derived
    for key in attributes:
        if key in fields:
            merged[key] = fields[key]  # keeps the field's position too
            winner = "commerce field" if key in derived else "product attribute"
            shadowed.append(f"{source} attribute {key!r} is shadowed by the {winner} of that name")
    return merged


def _order_fields(commerce: Commerce, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Transaction fields and the product list (``items``, built by the caller) of an order or cart event."""
    fields = {
        "OrderId": commerce.transaction_id,
        "Affiliation": commerce.affiliation,
        "Tax": commerce.tax_amount,
        "Shipping": commerce.shipping_amount,
        "CouponCode": commerce.coupon_code,
        "ItemNames": [i.name for i in commerce.items if i.name] or None,
        "Brands": sorted({i.brand for i in commerce.items if i.brand}) or None,
        "Categories": sorted({i.category for i in commerce.items if i.category}) or None,
        "Items": items or None,
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


def _item(item: Item, shadowed: list[str]) -> dict[str, Any]:
    """One entry of an ``Items`` list: the product's fields, then its custom attributes."""
    return _merge(_item_fields(item), item.attributes, "product", shadowed)


def _item_fields(item: Item) -> dict[str, Any]:
    """A product's own fields, without its custom attributes."""
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
    return {k: v for k, v in fields.items() if v is not None}


def _ordered_product(
    transaction_id: str | None,
    fields: dict[str, Any],
    product_attributes: dict[str, Any],
    attributes: dict[str, Any],
    shadowed: list[str],
) -> dict[str, Any]:
    """Properties of one ``Ordered Product``: order id and product fields, product attributes, event attributes."""
    if transaction_id is not None:
        fields = {"OrderId": transaction_id, **fields}
    merged = {**fields, **product_attributes, **attributes}  # always a new dict: fields is shared
    if len(merged) == len(fields) + len(product_attributes) + len(attributes):
        return merged  # no name in common: the common case
    product = _merge(fields, product_attributes, "product", shadowed)
    return _merge(product, attributes, "event", shadowed, derived=fields)


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
