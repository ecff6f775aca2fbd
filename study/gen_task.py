#!/usr/bin/env python3
"""Generate the `gsm-mini` task: templated grade-school arithmetic word problems.

Every problem is 1-3 exact integer steps with small numbers. The target completion is a
short chain of reasoning, one sentence per step with the arithmetic written out, and a
last line `#### <number>` (the GSM8K convention).

Splits are disjoint by construction:
  * train, dev and test use DIFFERENT templates (14 / 4 / 4), so test measures transfer
    to unseen problem wordings and operation orders, not just unseen numbers;
  * the person names come from three disjoint pools, one per split;
  * prompts are de-duplicated within a split.

Deterministic: the output depends only on --seed and the counts (Python's `random.Random`,
no hashing of strings, no time). Run:

    python3 study/gen_task.py --out study/data

Only the standard library is used.
"""

import argparse
import json
import os
import random

INSTRUCTION = "Solve it step by step, then give the final answer on a last line as '#### <number>'."

# Disjoint name pools, one per split (fresh names in dev/test).
NAMES = {
    "train": [
        "Tom", "Anna", "Liam", "Mia", "Noah", "Emma", "Lucas", "Olivia", "Ethan", "Sofia",
        "Jack", "Chloe", "Leo", "Grace", "Ben", "Lily", "Sam", "Zoe", "Max", "Ella",
        "Owen", "Ruby", "Ivan", "Nora", "Omar", "Hana", "Raj", "Lena", "Paul", "Maya",
    ],
    "dev": ["Carlos", "Aisha", "Felix", "Ingrid", "Kenji", "Priya", "Tariq", "Wendy"],
    "test": [
        "Bruno", "Daria", "Elif", "Gustav", "Imani", "Jonas", "Keiko", "Mateo",
        "Nadia", "Oscar", "Petra", "Quinn", "Rosa", "Sven", "Talia", "Yusuf",
    ],
}


def two_names(rng, pool):
    a, b = rng.sample(pool, 2)
    return a, b


# ---------------------------------------------------------------------------
# Templates. Each takes (rng, names) and returns (question, [reasoning lines], answer:int).
# ---------------------------------------------------------------------------

# ---- train templates (24) ----

def t_gift_add(rng, names):
    a_name, b_name = two_names(rng, names)
    item = rng.choice(["apples", "stickers", "marbles", "crayons", "stamps", "shells"])
    a, b = rng.randint(3, 40), rng.randint(2, 30)
    s = a + b
    q = f"{a_name} has {a} {item}. {b_name} gives {a_name} {b} more {item}. How many {item} does {a_name} have now?"
    return q, [f"{a_name} starts with {a} {item} and gets {b} more, so {a_name} has {a} + {b} = {s} {item}."], s


def t_give_away_sub(rng, names):
    a_name, b_name = two_names(rng, names)
    item = rng.choice(["cards", "balloons", "candies", "pencils", "stickers", "coins"])
    a = rng.randint(10, 60)
    b = rng.randint(2, a - 1)
    d = a - b
    q = f"{a_name} had {a} {item} and gave {b} of them to {b_name}. How many {item} does {a_name} have left?"
    return q, [f"{a_name} gave away {b} of {a} {item}, so {a} - {b} = {d} {item} are left."], d


def t_boxes_mul(rng, names):
    a_name, _ = two_names(rng, names)
    item, box, boxes = rng.choice([("pencils", "box", "boxes"), ("eggs", "carton", "cartons"),
                                   ("crayons", "pack", "packs"), ("cookies", "bag", "bags")])
    per, n = rng.randint(2, 12), rng.randint(2, 9)
    p = per * n
    q = f"One {box} holds {per} {item}. {a_name} buys {n} {boxes}. How many {item} does {a_name} buy?"
    return q, [f"Each {box} holds {per} {item}, so {n} {boxes} hold {n} * {per} = {p} {item}."], p


def t_share_div(rng, names):
    a_name, _ = two_names(rng, names)
    item = rng.choice(["cookies", "grapes", "marbles", "stickers", "candies"])
    k, each = rng.randint(2, 9), rng.randint(2, 12)
    total = k * each
    q = f"{a_name} shares {total} {item} equally among {k} friends. How many {item} does each friend get?"
    return q, [f"{total} {item} shared by {k} friends is {total} / {k} = {each} {item} each."], each


def t_win_lose(rng, names):
    a_name, _ = two_names(rng, names)
    a, b = rng.randint(5, 40), rng.randint(2, 25)
    c = rng.randint(1, a + b - 1)
    s, r = a + b, a + b - c
    q = f"{a_name} had {a} marbles, won {b} more in a game, and then lost {c}. How many marbles does {a_name} have now?"
    return q, [
        f"After winning, {a_name} has {a} + {b} = {s} marbles.",
        f"After losing {c}, {a_name} has {s} - {c} = {r} marbles.",
    ], r


def t_packs_plus(rng, names):
    a_name, _ = two_names(rng, names)
    n, per, c = rng.randint(2, 9), rng.randint(2, 10), rng.randint(1, 30)
    p, t = n * per, n * per + c
    q = f"{a_name} already has {c} cards and buys {n} packs with {per} cards in each pack. How many cards does {a_name} have now?"
    return q, [
        f"The packs hold {n} * {per} = {p} cards.",
        f"Together with the {c} cards {a_name} had, that is {p} + {c} = {t} cards.",
    ], t


def t_change(rng, names):
    a_name, _ = two_names(rng, names)
    thing = rng.choice(["notebook", "pen", "comic", "sandwich", "ticket"])
    price, n = rng.randint(2, 9), rng.randint(2, 6)
    cost = price * n
    paid = rng.choice([v for v in (10, 20, 50, 100) if v >= cost])
    ch = paid - cost
    q = f"Each {thing} costs ${price}. {a_name} buys {n} of them and pays with ${paid}. How much change does {a_name} get?"
    return q, [
        f"{n} {thing}s cost {n} * {price} = ${cost}.",
        f"The change is {paid} - {cost} = ${ch}.",
    ], ch


def t_pages_days(rng, names):
    a_name, _ = two_names(rng, names)
    per, d = rng.randint(3, 15), rng.randint(2, 7)
    p = per * d
    q = f"{a_name} reads {per} pages every day. How many pages does {a_name} read in {d} days?"
    return q, [f"{a_name} reads {per} pages a day for {d} days, so {d} * {per} = {p} pages."], p


def t_bags_two_colours(rng, names):
    a_name, _ = two_names(rng, names)
    r, b, n = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 6)
    per, t = r + b, (r + b) * n
    q = f"{a_name} has {n} bags. Each bag has {r} red beads and {b} blue beads. How many beads are there in all the bags?"
    return q, [
        f"Each bag has {r} + {b} = {per} beads.",
        f"{n} bags have {n} * {per} = {t} beads.",
    ], t


def t_eat_then_split(rng, names):
    a_name, _ = two_names(rng, names)
    k, each = rng.randint(2, 6), rng.randint(2, 9)
    rest = k * each
    e = rng.randint(1, 10)
    a = rest + e
    q = f"{a_name} has {a} strawberries, eats {e}, and puts the rest equally into {k} bowls. How many strawberries are in each bowl?"
    return q, [
        f"After eating, {a_name} has {a} - {e} = {rest} strawberries.",
        f"Each bowl gets {rest} / {k} = {each} strawberries.",
    ], each


def t_more_than_together(rng, names):
    a_name, b_name = two_names(rng, names)
    a, m = rng.randint(3, 30), rng.randint(2, 20)
    b, t = a + m, a + a + m
    q = f"{a_name} has {a} coins. {b_name} has {m} more coins than {a_name}. How many coins do they have together?"
    return q, [
        f"{b_name} has {a} + {m} = {b} coins.",
        f"Together they have {a} + {b} = {t} coins.",
    ], t


def t_times_difference(rng, names):
    a_name, b_name = two_names(rng, names)
    a, k = rng.randint(2, 12), rng.randint(2, 5)
    b, d = a * k, a * k - a
    q = f"{a_name} has {a} shells. {b_name} has {k} times as many shells as {a_name}. How many more shells does {b_name} have than {a_name}?"
    return q, [
        f"{b_name} has {k} * {a} = {b} shells.",
        f"{b_name} has {b} - {a} = {d} more shells than {a_name}.",
    ], d


def t_rows_die(rng, names):
    rows, per = rng.randint(2, 9), rng.randint(2, 10)
    p = rows * per
    x = rng.randint(1, p - 1)
    left = p - x
    plant = rng.choice(["tomato plants", "tulips", "sunflowers", "carrots"])
    q = f"A garden has {rows} rows with {per} {plant} in each row. {x} of the {plant} die. How many {plant} are left?"
    return q, [
        f"The garden has {rows} * {per} = {p} {plant}.",
        f"After {x} die, {p} - {x} = {left} {plant} are left.",
    ], left


def t_save_spend(rng, names):
    a_name, _ = two_names(rng, names)
    per, w = rng.randint(2, 15), rng.randint(2, 8)
    s = per * w
    c = rng.randint(1, s - 1)
    left = s - c
    thing = rng.choice(["a book", "a game", "a ball", "a kite", "a puzzle"])
    q = f"{a_name} saves ${per} every week for {w} weeks and then spends ${c} on {thing}. How much money does {a_name} have left?"
    return q, [
        f"{a_name} saves {w} * {per} = ${s}.",
        f"After spending ${c}, {a_name} has {s} - {c} = ${left} left.",
    ], left


# Added so that every dev/test skeleton (the order of operations) has at least two train
# wordings: the splits share procedures, never wordings (see study/README.md).

def t_morning_afternoon_add(rng, names):
    a_name, _ = two_names(rng, names)
    item = rng.choice(["cookies", "paper cranes", "bracelets", "cupcakes"])
    a, b = rng.randint(3, 40), rng.randint(2, 30)
    s = a + b
    q = f"{a_name} made {a} {item} in the morning and {b} {item} in the afternoon. How many {item} did {a_name} make?"
    return q, [f"{a_name} made {a} + {b} = {s} {item}."], s


def t_shop_sold_sub(rng, names):
    item = rng.choice(["balloons", "kites", "umbrellas", "hats"])
    a = rng.randint(10, 60)
    b = rng.randint(2, a - 1)
    d = a - b
    q = f"A shop had {a} {item} and sold {b} of them. How many {item} does the shop have now?"
    return q, [f"The shop sold {b} of {a} {item}, so {a} - {b} = {d} {item} are left."], d


def t_teams_div(rng, names):
    k, each = rng.randint(2, 9), rng.randint(2, 12)
    total = k * each
    who, where = rng.choice([("children", "a class"), ("players", "a club"), ("students", "a school trip")])
    q = f"There are {total} {who} in {where}. The coach makes teams of {each} {who}. How many teams are there?"
    return q, [f"{total} {who} in teams of {each} is {total} / {each} = {k} teams."], k


def t_half_give(rng, names):
    a_name, b_name = two_names(rng, names)
    h = rng.randint(2, 30)
    a = 2 * h
    q = f"{a_name} has {a} pencils and gives half of them to {b_name}. How many pencils does {b_name} get?"
    return q, [f"Half of {a} pencils is {a} / 2 = {h} pencils."], h


def t_earn_half(rng, names):
    a_name, _ = two_names(rng, names)
    per, d = rng.randint(2, 12), rng.randint(2, 6)
    if (per * d) % 2:
        per += 1
    e, half = per * d, per * d // 2
    q = f"{a_name} earns ${per} each day for {d} days and saves half of the money. How much money does {a_name} save?"
    return q, [
        f"{a_name} earns {d} * {per} = ${e}.",
        f"Half of it is {e} / 2 = ${half}.",
    ], half


def t_half_as_far_total(rng, names):
    a_name, _ = two_names(rng, names)
    h = rng.randint(2, 20)
    a = 2 * h
    t = a + h
    q = f"{a_name} ran {a} km on Monday and half as far on Tuesday. How many km did {a_name} run on the two days?"
    return q, [
        f"On Tuesday {a_name} ran {a} / 2 = {h} km.",
        f"On the two days {a_name} ran {a} + {h} = {t} km.",
    ], t


def t_bags_div_mul(rng, names):
    a_name, _ = two_names(rng, names)
    n, per = rng.randint(2, 8), rng.randint(2, 12)
    total = n * per
    k = rng.randint(1, n)
    got = k * per
    q = f"{total} cookies are packed equally into {n} bags. {a_name} buys {k} of the bags. How many cookies does {a_name} buy?"
    return q, [
        f"Each bag has {total} / {n} = {per} cookies.",
        f"{k} bags have {k} * {per} = {got} cookies.",
    ], got


def t_two_prices(rng, names):
    a_name, _ = two_names(rng, names)
    a, p, b, r = rng.randint(1, 9), rng.randint(2, 5), rng.randint(1, 9), rng.randint(2, 5)
    x, y = a * p, b * r
    t = x + y
    q = f"{a_name} buys {a} pens that cost ${p} each and {b} notebooks that cost ${r} each. How much does {a_name} pay in total?"
    return q, [
        f"The pens cost {a} * {p} = ${x}.",
        f"The notebooks cost {b} * {r} = ${y}.",
        f"In total {a_name} pays {x} + {y} = ${t}.",
    ], t


def t_shelf_take_return(rng, names):
    a_name, _ = two_names(rng, names)
    a = rng.randint(10, 40)
    b = rng.randint(1, a - 1)
    c = rng.randint(1, 15)
    m, r = a - b, a - b + c
    q = f"A shelf has {a} books. {a_name} takes {b} books away and later puts {c} books on the shelf. How many books are on the shelf now?"
    return q, [
        f"After taking {b}, there are {a} - {b} = {m} books.",
        f"After putting {c} back, there are {m} + {c} = {r} books.",
    ], r


def t_orchard_plant(rng, names):
    a, b, c = rng.randint(10, 60), rng.randint(2, 6), rng.randint(2, 10)
    p, t = b * c, a + b * c
    q = f"An orchard has {a} trees. The farmer plants {b} new rows with {c} trees in each row. How many trees does the orchard have now?"
    return q, [
        f"The new rows have {b} * {c} = {p} trees.",
        f"The orchard now has {a} + {p} = {t} trees.",
    ], t


# ---- dev templates (6) ----

def d_bus_stop(rng, names):
    a, b = rng.randint(10, 40), rng.randint(1, 9)
    b = min(b, a - 1)
    c = rng.randint(1, 15)
    m, r = a - b, a - b + c
    q = f"A bus has {a} passengers. At the first stop, {b} passengers get off and {c} get on. How many passengers are on the bus now?"
    return q, [
        f"After {b} get off, there are {a} - {b} = {m} passengers.",
        f"After {c} get on, there are {m} + {c} = {r} passengers.",
    ], r


def d_bake_sell(rng, names):
    a_name, _ = two_names(rng, names)
    t, m = rng.randint(2, 6), rng.randint(4, 12)
    p = t * m
    s = rng.randint(1, p - 1)
    left = p - s
    q = f"{a_name} bakes {t} trays of muffins with {m} muffins on each tray and sells {s} muffins. How many muffins are left?"
    return q, [
        f"{a_name} bakes {t} * {m} = {p} muffins.",
        f"After selling {s}, {p} - {s} = {left} muffins are left.",
    ], left


def d_half_together(rng, names):
    a_name, b_name = two_names(rng, names)
    h = rng.randint(2, 25)
    a = 2 * h
    t = a + h
    q = f"{a_name} has {a} stamps. {b_name} has half as many stamps as {a_name}. How many stamps do they have together?"
    return q, [
        f"{b_name} has {a} / 2 = {h} stamps.",
        f"Together they have {a} + {h} = {t} stamps.",
    ], t


def d_ribbon(rng, names):
    a_name, _ = two_names(rng, names)
    n, piece = rng.randint(2, 8), rng.randint(2, 12)
    length = n * piece
    k = rng.randint(1, n)
    used = k * piece
    q = f"A ribbon {length} cm long is cut into {n} equal pieces. {a_name} uses {k} of the pieces. How many cm of ribbon does {a_name} use?"
    return q, [
        f"Each piece is {length} / {n} = {piece} cm long.",
        f"{k} pieces are {k} * {piece} = {used} cm.",
    ], used


def d_stickers_add(rng, names):
    a_name, b_name = two_names(rng, names)
    a, b = rng.randint(3, 40), rng.randint(2, 30)
    s = a + b
    q = f"{a_name} collected {a} leaves and {b_name} collected {b} leaves. How many leaves did they collect in all?"
    return q, [f"They collected {a} + {b} = {s} leaves."], s


def d_chairs_mul(rng, names):
    rows, per = rng.randint(2, 9), rng.randint(2, 12)
    t = rows * per
    q = f"A hall has {rows} rows of chairs with {per} chairs in each row. How many chairs are in the hall?"
    return q, [f"{rows} rows of {per} chairs is {rows} * {per} = {t} chairs."], t


# ---- test templates (6) ----

def e_library(rng, names):
    a, b, c = rng.randint(10, 80), rng.randint(2, 6), rng.randint(2, 10)
    p, t = b * c, a + b * c
    q = f"A school library had {a} books. It bought {b} boxes of new books with {c} books in each box. How many books does the library have now?"
    return q, [
        f"The boxes hold {b} * {c} = {p} books.",
        f"The library now has {a} + {p} = {t} books.",
    ], t


def e_pick_half(rng, names):
    a_name, b_name = two_names(rng, names)
    per, h = rng.randint(2, 12), rng.randint(2, 6)
    if (per * h) % 2:
        per += 1
    p, half = per * h, per * h // 2
    q = f"{a_name} picks {per} cherries every hour for {h} hours and then gives half of them to {b_name}. How many cherries does {a_name} give to {b_name}?"
    return q, [
        f"{a_name} picks {h} * {per} = {p} cherries.",
        f"Half of them is {p} / 2 = {half} cherries.",
    ], half


def e_money_left(rng, names):
    a_name, _ = two_names(rng, names)
    price, n = rng.randint(2, 9), rng.randint(2, 6)
    cost = price * n
    have = rng.randint(cost + 1, cost + 40)
    left = have - cost
    q = f"{a_name} has ${have} and buys {n} comics for ${price} each. How much money does {a_name} have left?"
    return q, [
        f"The comics cost {n} * {price} = ${cost}.",
        f"{a_name} has {have} - {cost} = ${left} left.",
    ], left


def e_farm_legs(rng, names):
    a_name, _ = two_names(rng, names)
    c, h = rng.randint(1, 9), rng.randint(1, 12)
    cl, hl = 4 * c, 2 * h
    t = cl + hl
    q = f"{a_name}'s farm has {c} cows and {h} hens. Each cow has 4 legs and each hen has 2 legs. How many legs do the animals have in total?"
    return q, [
        f"The cows have {c} * 4 = {cl} legs.",
        f"The hens have {h} * 2 = {hl} legs.",
        f"In total there are {cl} + {hl} = {t} legs.",
    ], t


def e_pool_sub(rng, names):
    a = rng.randint(10, 60)
    b = rng.randint(2, a - 1)
    d = a - b
    q = f"There were {a} ducks on a pond. {b} ducks flew away. How many ducks are still on the pond?"
    return q, [f"{b} of {a} ducks flew away, so {a} - {b} = {d} ducks are left."], d


def e_boats_div(rng, names):
    k, each = rng.randint(2, 9), rng.randint(2, 10)
    total = k * each
    q = f"{total} campers go on a lake. Each boat carries {each} campers. How many boats do they need?"
    return q, [f"{total} campers with {each} in each boat is {total} / {each} = {k} boats."], k


TEMPLATES = {
    "train": [
        t_gift_add, t_give_away_sub, t_boxes_mul, t_share_div, t_win_lose, t_packs_plus, t_change,
        t_pages_days, t_bags_two_colours, t_eat_then_split, t_more_than_together, t_times_difference,
        t_rows_die, t_save_spend, t_morning_afternoon_add, t_shop_sold_sub, t_teams_div, t_half_give,
        t_earn_half, t_half_as_far_total, t_bags_div_mul, t_two_prices, t_shelf_take_return,
        t_orchard_plant,
    ],
    "dev": [d_bus_stop, d_bake_sell, d_half_together, d_ribbon, d_stickers_add, d_chairs_mul],
    "test": [e_library, e_pick_half, e_farm_legs, e_pool_sub, e_boats_div, e_money_left],
}


# The order of operations each template asks for. Splits share skeletons, never wordings:
# every dev and test skeleton has a train template, most have two (checked in main).
SKELETON = {
    "t_gift_add": "a+b", "t_morning_afternoon_add": "a+b", "d_stickers_add": "a+b",
    "t_give_away_sub": "a-b", "t_shop_sold_sub": "a-b", "e_pool_sub": "a-b",
    "t_boxes_mul": "a*b", "t_pages_days": "a*b", "d_chairs_mul": "a*b",
    "t_share_div": "a/b", "t_teams_div": "a/b", "e_boats_div": "a/b",
    "t_rows_die": "a*b-c", "t_save_spend": "a*b-c", "d_bake_sell": "a*b-c",
    "t_change": "c-a*b", "t_more_than_together": "a+(a+b)", "t_times_difference": "a*b-a",
    "t_bags_two_colours": "(a+b)*c", "t_eat_then_split": "(a-b)/c",
    "t_packs_plus": "c+a*b", "t_orchard_plant": "c+a*b", "e_library": "c+a*b",
    "t_win_lose": "a+b-c", "t_shelf_take_return": "a-b+c", "d_bus_stop": "a-b+c",
    "t_half_give": "a/2", "t_earn_half": "a*b/2", "e_pick_half": "a*b/2",
    "t_half_as_far_total": "a+a/2", "d_half_together": "a+a/2",
    "t_bags_div_mul": "a/b*c", "d_ribbon": "a/b*c",
    "t_two_prices": "a*b+c*d", "e_farm_legs": "a*b+c*d",
    "e_money_left": "c-a*b",
}


def template_id(fn):
    return fn.__name__


def make_split(split, n, seed):
    # One independent stream per split, derived from the seed by integer arithmetic only.
    rng = random.Random(seed * 1000 + {"train": 1, "dev": 2, "test": 3}[split])
    templates = TEMPLATES[split]
    names = NAMES[split]
    seen = set()
    out = []
    i = 0
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n:
            raise RuntimeError(f"cannot make {n} distinct {split} problems")
        fn = templates[i % len(templates)]  # round-robin: balanced templates
        q, steps, ans = fn(rng, names)
        prompt = f"{q}\n{INSTRUCTION}"
        if prompt in seen:
            continue
        seen.add(prompt)
        i += 1
        assert isinstance(ans, int) and ans >= 0
        completion = "\n".join(steps) + f"\n#### {ans}"
        out.append({
            "id": f"{split}-{len(out):05d}",
            "split": split,
            "template": template_id(fn),
            "skeleton": SKELETON[template_id(fn)],
            "prompt": prompt,
            "answer": str(ans),
            "completion": completion,
        })
    # Shuffle so templates are interleaved but not in a fixed cycle.
    rng.shuffle(out)
    for k, ex in enumerate(out):
        ex["id"] = f"{split}-{k:05d}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--dev", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    splits = {s: make_split(s, getattr(args, s), args.seed) for s in ("train", "dev", "test")}

    # Disjointness checks (templates, names, prompts).
    tmpl = {s: {e["template"] for e in ex} for s, ex in splits.items()}
    assert not (tmpl["train"] & tmpl["dev"]) and not (tmpl["train"] & tmpl["test"]) and not (tmpl["dev"] & tmpl["test"])
    assert not (set(NAMES["train"]) & set(NAMES["dev"])) and not (set(NAMES["train"]) & set(NAMES["test"]))
    assert not (set(NAMES["dev"]) & set(NAMES["test"]))
    train_skeletons = [SKELETON[template_id(fn)] for fn in TEMPLATES["train"]]
    for split in ("dev", "test"):
        for fn in TEMPLATES[split]:
            sk = SKELETON[template_id(fn)]
            assert sk in train_skeletons, f"{fn.__name__}: no train template has skeleton {sk}"
    prompts = {s: {e["prompt"] for e in ex} for s, ex in splits.items()}
    assert not (prompts["train"] & prompts["dev"]) and not (prompts["train"] & prompts["test"])

    for s, ex in splits.items():
        path = os.path.join(args.out, f"{s}.jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for e in ex:
                f.write(json.dumps(e, ensure_ascii=True, sort_keys=False) + "\n")
        print(f"{s}: {len(ex)} problems, {len(tmpl[s])} templates -> {path}")


if __name__ == "__main__":
    main()
