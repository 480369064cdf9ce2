"""Products and promotions of either input shape -> the internal ``Item`` and ``PromotionItem``."""

from __future__ import annotations

from typing import Any

from mparticle_klaviyo.mparticle.batch import Product, Promotion
from mparticle_klaviyo.mparticle.firehose import FirehoseProduct, FirehosePromotion
from mparticle_klaviyo.mparticle.model import Item, PromotionItem
from mparticle_klaviyo.mparticle.names import as_number, as_text


def make_item(product: Product | FirehoseProduct, total: Any, attributes: dict[str, Any] | None) -> Item:
    """An ``Item``; the shapes differ only in where the total and the attributes live."""
    return Item(
        id=as_text(product.id),
        name=product.name,
        brand=product.brand,
        category=product.category,
        variant=product.variant,
        position=as_number(product.position),
        price=as_number(product.price),
        quantity=as_number(product.quantity),
        coupon_code=product.coupon_code,
        total=as_number(total),
        attributes=attributes or {},
    )


def batch_item(product: Product) -> Item:
    """A batch product: its total is ``total_product_amount``."""
    return make_item(product, product.total_product_amount, product.custom_attributes)


def firehose_item(product: FirehoseProduct) -> Item:
    """A Firehose product: its total is ``total_amount``."""
    return make_item(product, product.total_amount, product.attributes)


def make_promotion(promotion: Promotion | FirehosePromotion) -> PromotionItem:
    """A ``PromotionItem``."""
    return PromotionItem(
        id=as_text(promotion.id), name=promotion.name, creative=promotion.creative, position=as_text(promotion.position)
    )
