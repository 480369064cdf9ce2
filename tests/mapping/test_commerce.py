"""Commerce events -> Klaviyo metrics: product actions, purchases, promotions and impressions."""

from __future__ import annotations

from typing import Any

import pytest

from mparticle_klaviyo.mapping.commerce import commerce_metrics, item_total
from mparticle_klaviyo.mapping.result import MappedBatch, Notice
from mparticle_klaviyo.mparticle.model import Commerce, Item
from tests.mapping.builders import T0_ISO, batch_doc, commerce, drops, map_doc, metrics, product

PRODUCT_ACTIONS = [
    ("add_to_cart", "Added to Cart"),
    ("remove_from_cart", "Removed from Cart"),
    ("checkout", "Started Checkout"),
    ("checkout_option", "Checkout Option"),
    ("click", "Clicked Product"),
    ("view_detail", "Viewed Product"),
    ("add_to_wishlist", "Added to Wishlist"),
    ("remove_from_wishlist", "Removed from Wishlist"),
    ("remove_from_wish_list", "Removed from Wishlist"),
    ("refund", "Refunded Order"),
]


def purchase(**extra: Any) -> dict[str, Any]:
    action = {
        "action": "purchase",
        "transaction_id": "T-1001",
        "affiliation": "web-store",
        "total_amount": 108.0,
        "tax_amount": 8.0,
        "shipping_amount": 0.0,
        "coupon_code": "SPRING",
        "products": [
            product(
                "SKU-1",
                89.5,
                brand="Acme",
                category="Shoes",
                variant="Red",
                position=1,
                total_product_amount=89.5,
                custom_attributes={"size": "9"},
            ),
            product("SKU-2", 5.25, 2, brand="Acme", category="Apparel", position=2, total_product_amount=10.5),
        ],
    }
    return commerce(product_action=action, currency_code="USD", source_message_id="order-1", **extra)


@pytest.mark.parametrize(("action", "name"), PRODUCT_ACTIONS)
def test_each_product_action_has_its_metric(action: str, name: str) -> None:
    doc = batch_doc(commerce(product_action={"action": action, "products": [product("S1", 5.0)]}))
    assert metrics(map_doc(doc)) == [name]


@pytest.mark.parametrize(("action", "name"), [("ADD_TO_CART", "Added to Cart"), ("Purchase", "Placed Order")])
def test_product_actions_match_in_any_case(action: str, name: str) -> None:
    doc = batch_doc(commerce(product_action={"action": action}))
    assert metrics(map_doc(doc))[0] == name


def test_a_product_action_carries_order_fields_and_the_items_list() -> None:
    action = {"action": "add_to_cart", "products": [product("S1", 5.0, 2, brand="Acme", category="Socks")]}
    result = map_doc(batch_doc(commerce(product_action=action, custom_attributes={"channel": "app"})))
    assert result.events[0].attributes["properties"] == {
        "ItemNames": ["Product S1"],
        "Brands": ["Acme"],
        "Categories": ["Socks"],
        "Items": [
            {
                "ProductID": "S1",
                "ProductName": "Product S1",
                "Brand": "Acme",
                "Categories": ["Socks"],
                "ItemPrice": 5.0,
                "Quantity": 2,
                "RowTotal": 10.0,
            }
        ],
        "channel": "app",
    }


def test_a_cart_event_is_worth_its_products() -> None:
    action = {"action": "add_to_cart", "products": [product("S1", 5.0, 2), product("S2", 1.5)]}
    assert map_doc(batch_doc(commerce(product_action=action))).events[0].attributes["value"] == 11.5


def test_a_product_action_without_products_or_total_has_no_value() -> None:
    result = map_doc(batch_doc(commerce(product_action={"action": "checkout"})))
    assert result.events[0].attributes["properties"] == {}
    assert "value" not in result.events[0].attributes


def test_a_purchase_is_one_placed_order_and_one_ordered_product_per_product() -> None:
    result = map_doc(batch_doc(purchase()))
    assert metrics(result) == ["Placed Order", "Ordered Product", "Ordered Product"]
    assert [e.unique_id for e in result.events] == ["order-1", "order-1:0", "order-1:1"]
    assert [e.index for e in result.events] == [0, 0, 0]


def test_the_placed_order_is_worth_the_total_and_lists_the_transaction_and_items() -> None:
    order = map_doc(batch_doc(purchase(custom_attributes={"channel": "app"}))).events[0].attributes
    assert order == {
        "properties": {
            "OrderId": "T-1001",
            "Affiliation": "web-store",
            "Tax": 8.0,
            "Shipping": 0.0,
            "CouponCode": "SPRING",
            "ItemNames": ["Product SKU-1", "Product SKU-2"],
            "Brands": ["Acme"],
            "Categories": ["Apparel", "Shoes"],
            "Items": [
                {
                    "ProductID": "SKU-1",
                    "ProductName": "Product SKU-1",
                    "Brand": "Acme",
                    "Categories": ["Shoes"],
                    "Variant": "Red",
                    "Position": 1,
                    "ItemPrice": 89.5,
                    "Quantity": 1,
                    "RowTotal": 89.5,
                    "size": "9",
                },
                {
                    "ProductID": "SKU-2",
                    "ProductName": "Product SKU-2",
                    "Brand": "Acme",
                    "Categories": ["Apparel"],
                    "Position": 2,
                    "ItemPrice": 5.25,
                    "Quantity": 2,
                    "RowTotal": 10.5,
                },
            ],
            "channel": "app",
        },
        "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
        "unique_id": "order-1",
        "time": T0_ISO,
        "value": 108.0,
        "value_currency": "USD",
    }


def test_each_ordered_product_is_worth_its_own_total() -> None:
    result = map_doc(batch_doc(purchase()))
    assert [e.attributes["value"] for e in result.events[1:]] == [89.5, 10.5]
    assert {e.attributes["value_currency"] for e in result.events} == {"USD"}


def test_an_ordered_product_has_the_order_id_its_fields_and_the_event_attributes() -> None:
    result = map_doc(batch_doc(purchase(custom_attributes={"channel": "app"})))
    assert result.events[1].attributes["properties"] == {
        "OrderId": "T-1001",
        "ProductID": "SKU-1",
        "ProductName": "Product SKU-1",
        "Brand": "Acme",
        "Categories": ["Shoes"],
        "Variant": "Red",
        "Position": 1,
        "ItemPrice": 89.5,
        "Quantity": 1,
        "RowTotal": 89.5,
        "size": "9",
        "channel": "app",
    }


def test_an_explicit_value_is_the_order_value_but_not_the_product_values() -> None:
    result = map_doc(batch_doc(purchase(custom_attributes={"$value": "99.95", "$event_id": "evt-7"})))
    assert [e.attributes["value"] for e in result.events] == [99.95, 89.5, 10.5]
    assert [e.unique_id for e in result.events] == ["evt-7", "evt-7:0", "evt-7:1"]
    assert "$value" not in result.events[0].attributes["properties"]


def test_an_order_without_a_total_is_worth_the_sum_of_its_products() -> None:
    action = {"action": "purchase", "products": [product("S1", 5.0, 2), product("S2", 2.5)]}
    result = map_doc(batch_doc(commerce(product_action=action)))
    assert [e.attributes["value"] for e in result.events] == [12.5, 10.0, 2.5]


def test_an_order_without_products_is_only_a_placed_order() -> None:
    action = {"action": "purchase", "transaction_id": "T-9", "total_amount": "12.5"}
    result = map_doc(batch_doc(commerce(product_action=action)))
    assert metrics(result) == ["Placed Order"]
    assert (result.events[0].attributes["value"], result.events[0].attributes["properties"]) == (
        12.5,
        {"OrderId": "T-9"},
    )


def test_a_refund_is_one_refunded_order_worth_its_total() -> None:
    action = {"action": "refund", "transaction_id": "T-1", "total_amount": 20, "products": [product("S1", 20.0)]}
    result = map_doc(batch_doc(commerce(product_action=action, currency_code="EUR")))
    assert metrics(result) == ["Refunded Order"]
    assert (result.events[0].attributes["value"], result.events[0].attributes["value_currency"]) == (20, "EUR")


@pytest.mark.parametrize(("action", "name"), [("view", "Viewed Promotion"), ("click", "Clicked Promotion")])
def test_promotions_are_viewed_or_clicked_promotion_with_the_promotion_list(action: str, name: str) -> None:
    promotions = [{"id": "P1", "name": "Spring", "creative": "banner", "position": "top"}, {"id": 7}]
    doc = batch_doc(
        commerce(promotion_action={"action": action, "promotions": promotions}, custom_attributes={"k": "v"})
    )
    event = map_doc(doc).events[0]
    assert event.attributes["metric"]["data"]["attributes"]["name"] == name
    assert event.attributes["properties"] == {
        "Promotions": [
            {"PromotionID": "P1", "PromotionName": "Spring", "Creative": "banner", "Position": "top"},
            {"PromotionID": "7"},
        ],
        "k": "v",
    }
    assert "value" not in event.attributes


def test_impressions_are_viewed_impression_with_each_list() -> None:
    impressions = [
        {"product_impression_list": "Search", "products": [product("S1", 5.0)]},
        {"products": [product("S2", 1.0, 3)]},
    ]
    event = map_doc(batch_doc(commerce(product_impressions=impressions))).events[0]
    assert event.attributes["metric"]["data"]["attributes"]["name"] == "Viewed Impression"
    assert event.attributes["properties"] == {
        "Impressions": [
            {
                "ListName": "Search",
                "Items": [
                    {"ProductID": "S1", "ProductName": "Product S1", "ItemPrice": 5.0, "Quantity": 1, "RowTotal": 5.0}
                ],
            },
            {
                "Items": [
                    {"ProductID": "S2", "ProductName": "Product S2", "ItemPrice": 1.0, "Quantity": 3, "RowTotal": 3.0}
                ]
            },
        ]
    }


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({"product_action": {"action": "unknown"}}, "unknown"),
        ({"product_action": {"action": "teleport"}}, "teleport"),
        ({"promotion_action": {"action": "unknown"}}, "unknown"),
        ({"currency_code": "USD"}, "none"),
    ],
)
def test_a_commerce_event_without_a_supported_action_is_dropped(data: dict[str, Any], detail: str) -> None:
    result = map_doc(batch_doc(commerce(**data)))
    assert (result.events, result.notices) == (
        [],
        [Notice(kind="dropped", reason="unsupported_commerce_action", event=0, detail=detail)],
    )


def test_a_dropped_commerce_event_leaves_the_rest_of_the_batch() -> None:
    result = map_doc(batch_doc(commerce(product_action={"action": "unknown"}), purchase()))
    assert (metrics(result), drops(result)) == (
        ["Placed Order", "Ordered Product", "Ordered Product"],
        [("unsupported_commerce_action", 0)],
    )


@pytest.mark.parametrize(
    ("item", "total"),
    [
        (Item(total=7.0, price=1.0, quantity=2), 7.0),
        (Item(price=2.5, quantity=4), 10.0),
        (Item(price=2.5), 2.5),
        (Item(quantity=3), None),
        (Item(), None),
    ],
)
def test_a_product_total_is_its_own_total_else_price_times_quantity(item: Item, total: float | None) -> None:
    assert item_total(item) == total


def test_commerce_metrics_returns_none_for_an_unsupported_action() -> None:
    assert commerce_metrics(Commerce(kind="product", action="teleport"), {}, []) is None
    assert commerce_metrics(Commerce(kind="promotion", action="hover"), {}, []) is None


def shadowed(result: MappedBatch) -> list[tuple[int | str | None, str | None]]:
    """``(event, detail)`` of every attribute_shadowed warning."""
    return [(n.event, n.detail) for n in result.notices if n.reason == "attribute_shadowed"]


def one_product_purchase(event_attributes: dict[str, Any], **product_extra: Any) -> dict[str, Any]:
    action = {
        "action": "purchase",
        "transaction_id": "T-1",
        "total_amount": 10.0,
        "products": [{"id": "S1", "name": "product uno", "price": 10.0, "quantity": 1, **product_extra}],
    }
    return batch_doc(commerce(product_action=action, custom_attributes=event_attributes))


def test_the_product_name_wins_over_an_event_attribute_of_the_same_name() -> None:
    result = map_doc(one_product_purchase({"ProductName": "FROM_EVENT"}))
    assert metrics(result) == ["Placed Order", "Ordered Product"]
    assert result.events[0].attributes["properties"]["ProductName"] == "FROM_EVENT"  # no such order field
    assert result.events[1].attributes["properties"]["ProductName"] == "product uno"
    assert shadowed(result) == [(0, "event attribute 'ProductName' is shadowed by the commerce field of that name")]


def test_order_fields_win_over_event_attributes_of_the_same_name() -> None:
    result = map_doc(one_product_purchase({"OrderId": "mine", "Items": "mine", "channel": "app"}))
    order, ordered = (e.attributes["properties"] for e in result.events)
    assert (order["OrderId"], order["Items"][0]["ProductName"], order["channel"]) == ("T-1", "product uno", "app")
    assert (ordered["OrderId"], ordered["channel"]) == ("T-1", "app")
    assert [detail for _, detail in shadowed(result)] == [
        "event attribute 'OrderId' is shadowed by the commerce field of that name",
        "event attribute 'Items' is shadowed by the commerce field of that name",
    ]


def test_a_shadowed_attribute_value_never_appears_in_the_warning() -> None:
    result = map_doc(one_product_purchase({"ProductName": "SECRET-VALUE"}))
    assert all("SECRET-VALUE" not in (n.detail or "") for n in result.notices)


def test_product_fields_win_over_product_attributes_of_the_same_name() -> None:
    result = map_doc(one_product_purchase({}, custom_attributes={"ProductID": "other", "size": "9"}))
    order, ordered = (e.attributes["properties"] for e in result.events)
    assert (order["Items"][0]["ProductID"], order["Items"][0]["size"]) == ("S1", "9")
    assert (ordered["ProductID"], ordered["size"]) == ("S1", "9")
    assert shadowed(result) == [(0, "product attribute 'ProductID' is shadowed by the commerce field of that name")]


def test_in_an_ordered_product_product_attributes_win_over_event_attributes() -> None:
    result = map_doc(one_product_purchase({"size": "event", "channel": "app"}, custom_attributes={"size": "9"}))
    order, ordered = (e.attributes["properties"] for e in result.events)
    assert (ordered["size"], ordered["channel"], order["size"]) == ("9", "app", "event")
    assert shadowed(result) == [(0, "event attribute 'size' is shadowed by the product attribute of that name")]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"promotion_action": {"action": "view", "promotions": [{"id": "P1"}]}}, "Promotions"),
        ({"product_impressions": [{"products": [product("S1", 1.0)]}]}, "Impressions"),
        ({"product_action": {"action": "add_to_cart", "products": [product("S1", 1.0)]}}, "Items"),
    ],
)
def test_every_commerce_list_wins_over_an_event_attribute_of_its_name(data: dict[str, Any], field: str) -> None:
    result = map_doc(batch_doc(commerce(custom_attributes={field: "mine"}, **data)))
    assert isinstance(result.events[0].attributes["properties"][field], list)
    assert shadowed(result) == [(0, f"event attribute {field!r} is shadowed by the commerce field of that name")]


def test_a_shadowed_attribute_is_reported_once_per_event() -> None:
    action = {"action": "purchase", "transaction_id": "T-1", "products": [product("S1", 1.0), product("S2", 2.0)]}
    result = map_doc(batch_doc(commerce(product_action=action, custom_attributes={"OrderId": "x"})))
    assert len(result.events) == 3
    assert shadowed(result) == [(0, "event attribute 'OrderId' is shadowed by the commerce field of that name")]


def test_attributes_that_collide_with_nothing_raise_no_warning() -> None:
    assert map_doc(batch_doc(purchase(custom_attributes={"channel": "app"}))).notices == []
