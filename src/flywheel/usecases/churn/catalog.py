"""Reference data for the synthetic theLook world: distribution centres, the product catalogue,
names and places. Small fixed lists; the big tables index into them with vectorized draws."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.usecases.churn.tables import TABLES

# theLook's ten distribution centres (name, latitude, longitude).
DISTRIBUTION_CENTERS = (
    ("Memphis TN", 35.1174, -89.9711),
    ("Chicago IL", 41.8369, -87.6847),
    ("Houston TX", 29.7604, -95.3698),
    ("Los Angeles CA", 34.0500, -118.2500),
    ("New Orleans LA", 29.9500, -90.0667),
    ("Port Authority of New York/New Jersey NY/NJ", 40.6340, -73.7834),
    ("Philadelphia PA", 39.9500, -75.1667),
    ("Mobile AL", 30.6944, -88.0431),
    ("Charleston SC", 32.7833, -79.9333),
    ("Savannah GA", 32.0167, -81.1167),
)

# (department, category, median retail price in USD)
CATEGORIES = (
    ("Women", "Accessories", 35.0),
    ("Women", "Active", 40.0),
    ("Women", "Blazers & Jackets", 85.0),
    ("Women", "Dresses", 70.0),
    ("Women", "Fashion Hoodies & Sweatshirts", 50.0),
    ("Women", "Intimates", 25.0),
    ("Women", "Jeans", 75.0),
    ("Women", "Jumpsuits & Rompers", 55.0),
    ("Women", "Leggings", 25.0),
    ("Women", "Maternity", 45.0),
    ("Women", "Outerwear & Coats", 120.0),
    ("Women", "Pants & Capris", 50.0),
    ("Women", "Plus", 45.0),
    ("Women", "Shorts", 35.0),
    ("Women", "Skirts", 45.0),
    ("Women", "Sleep & Lounge", 35.0),
    ("Women", "Socks & Hosiery", 15.0),
    ("Women", "Suits", 110.0),
    ("Women", "Sweaters", 70.0),
    ("Women", "Swim", 50.0),
    ("Women", "Tops & Tees", 30.0),
    ("Men", "Accessories", 35.0),
    ("Men", "Active", 40.0),
    ("Men", "Fashion Hoodies & Sweatshirts", 55.0),
    ("Men", "Jeans", 80.0),
    ("Men", "Outerwear & Coats", 140.0),
    ("Men", "Pants", 55.0),
    ("Men", "Shorts", 35.0),
    ("Men", "Sleep & Lounge", 35.0),
    ("Men", "Socks", 12.0),
    ("Men", "Suits & Sport Coats", 160.0),
    ("Men", "Sweaters", 75.0),
    ("Men", "Swim", 40.0),
    ("Men", "Tops & Tees", 30.0),
    ("Men", "Underwear", 20.0),
)

BRAND_STEMS = (
    "Allegra",
    "Bellwether",
    "Cobalt",
    "Driftwood",
    "Ember",
    "Fairmont",
    "Granite",
    "Harbor",
    "Indigo",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Marlow",
    "Northwind",
    "Oakline",
    "Pioneer",
    "Quill",
    "Redwood",
    "Saltmarsh",
    "Tidewater",
    "Umber",
    "Vantage",
    "Willow",
    "Yardley",
    "Zephyr",
)
BRAND_SUFFIXES = ("", " & Co", " Denim", " Studio", " Outfitters", " Apparel")
ADJECTIVES = ("Classic", "Slim", "Relaxed", "Essential", "Vintage", "Premium", "Everyday", "Modern")

FIRST_NAMES_M = (
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Paul",
    "Steven",
    "Andrew",
    "Joshua",
    "Kevin",
    "Brian",
    "Jason",
    "Minjun",
    "Seojun",
    "Lucas",
    "Gabriel",
    "Mateo",
    "Hiroshi",
    "Wei",
    "Lukas",
    "Pierre",
    "Pablo",
)
FIRST_NAMES_F = (
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Betty",
    "Sandra",
    "Ashley",
    "Emily",
    "Michelle",
    "Amanda",
    "Melissa",
    "Laura",
    "Seoyeon",
    "Jiwoo",
    "Sofia",
    "Maria",
    "Yuki",
    "Mei",
    "Emma",
    "Camille",
    "Lucia",
    "Hannah",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Kim",
    "Park",
    "Choi",
    "Wang",
    "Li",
    "Zhang",
    "Tanaka",
    "Sato",
    "Muller",
    "Schmidt",
    "Dubois",
    "Silva",
    "Santos",
    "Nowak",
    "Rossi",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
)
STREET_NAMES = ("Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Lake", "Hill", "Park", "River", "Sunset")
STREET_SUFFIXES = ("St", "Ave", "Rd", "Blvd", "Ln", "Dr")

# (country, state, city, latitude, longitude, share of users); shares follow theLook's mix.
PLACES = (
    ("United States", "California", "Los Angeles", 34.05, -118.24, 0.08),
    ("United States", "Texas", "Houston", 29.76, -95.37, 0.06),
    ("United States", "New York", "New York", 40.71, -74.01, 0.05),
    ("United States", "Florida", "Miami", 25.76, -80.19, 0.03),
    ("United States", "Illinois", "Chicago", 41.88, -87.63, 0.02),
    ("China", "Guangdong", "Guangzhou", 23.13, 113.26, 0.12),
    ("China", "Shanghai", "Shanghai", 31.23, 121.47, 0.10),
    ("China", "Beijing", "Beijing", 39.90, 116.41, 0.12),
    ("Brasil", "São Paulo", "São Paulo", -23.55, -46.63, 0.09),
    ("Brasil", "Rio de Janeiro", "Rio de Janeiro", -22.91, -43.17, 0.05),
    ("South Korea", "Seoul", "Seoul", 37.57, 126.98, 0.04),
    ("South Korea", "Busan", "Busan", 35.18, 129.08, 0.01),
    ("France", "Île-de-France", "Paris", 48.86, 2.35, 0.04),
    ("United Kingdom", "England", "London", 51.51, -0.13, 0.04),
    ("Germany", "Berlin", "Berlin", 52.52, 13.40, 0.04),
    ("Spain", "Madrid", "Madrid", 40.42, -3.70, 0.04),
    ("Japan", "Tokyo", "Tokyo", 35.68, 139.69, 0.03),
    ("Australia", "New South Wales", "Sydney", -33.87, 151.21, 0.02),
    ("Belgium", "Brussels", "Brussels", 50.85, 4.35, 0.01),
    ("Poland", "Mazowieckie", "Warsaw", 52.23, 21.01, 0.005),
    ("Colombia", "Bogotá", "Bogotá", 4.71, -74.07, 0.005),
    ("Austria", "Vienna", "Vienna", 48.21, 16.37, 0.01),
)


def distribution_centers_table() -> pa.Table:
    ids = np.arange(1, len(DISTRIBUTION_CENTERS) + 1, dtype=np.int64)
    names, lats, lons = zip(*DISTRIBUTION_CENTERS, strict=True)
    return pa.table(
        [ids, list(names), list(lats), list(lons)], schema=TABLES["distribution_centers"].arrow_schema
    )


def products_table(count: int, rng: np.random.Generator) -> pa.Table:
    """A catalogue of ``count`` products with log-normal prices around each category's median."""
    ids = np.arange(1, count + 1, dtype=np.int64)
    category_idx = rng.integers(0, len(CATEGORIES), count)
    departments, categories, medians = (np.array(col) for col in zip(*CATEGORIES, strict=True))
    retail = np.round(medians[category_idx].astype(float) * rng.lognormal(0.0, 0.45, count), 2)
    retail = np.maximum(retail, 1.5)
    cost = np.round(retail * rng.uniform(0.35, 0.6, count), 2)
    brands = pa.array([s + x for s in BRAND_STEMS for x in BRAND_SUFFIXES])
    brand = brands.take(pa.array(rng.integers(0, len(brands), count)))
    adjective = pa.array(ADJECTIVES).take(pa.array(rng.integers(0, len(ADJECTIVES), count)))
    category = pa.array(categories[category_idx])
    name = pc.binary_join_element_wise(brand, adjective, category, " ")
    sku = pc.utf8_upper(
        pc.binary_join_element_wise(
            pa.array(np.char.mod("%08x", rng.integers(0, 2**32, count, dtype=np.uint64))),
            pa.array(np.char.mod("%06d", ids)),
            "-",
        )
    )
    dc = rng.integers(1, len(DISTRIBUTION_CENTERS) + 1, count).astype(np.int64)
    return pa.table(
        [ids, cost, category, name, brand, retail, pa.array(departments[category_idx]), sku, dc],
        schema=TABLES["products"].arrow_schema,
    )
