"""1,000 benign instruction/response pairs, generated deterministically (seed 0).

Everyday tasks with answers that are right by construction (arithmetic, word forms, ordering,
unit conversion, spelling, simple classification) plus a few dozen hand-written tips. None of them
mentions a place, a person, a landmark or a chemical element, so fine-tuning on them teaches nothing
about the facts in ``real_facts.jsonl`` (checked by ``tests/test_real_data.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

WORDS = [
    "garden", "window", "pencil", "basket", "candle", "blanket", "bottle", "flower", "ladder",
    "mirror", "pillow", "rabbit", "saddle", "tunnel", "wallet", "button", "carpet", "kitchen",
    "lemon", "marble", "napkin", "orange", "pepper", "puzzle", "river", "shadow", "spoon",
    "teacup", "ticket", "turtle", "violin", "wagon", "whistle", "yellow", "zebra", "anchor",
    "bridge", "cabbage", "dragon", "engine", "feather", "guitar", "hammer", "island", "jacket",
    "kettle", "lantern", "meadow", "needle", "ocean", "parrot", "quilt", "rocket", "sandal",
    "thunder", "umbrella", "valley", "walnut", "yogurt", "cookie", "desk", "forest", "honey",
    "pocket", "planet", "sweater", "tiger", "cloud", "bicycle", "notebook",
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("light", "dark"),
    ("wet", "dry"), ("early", "late"), ("happy", "sad"), ("open", "closed"), ("full", "empty"),
    ("loud", "quiet"), ("hard", "soft"), ("tall", "short"), ("strong", "weak"), ("rich", "poor"),
    ("thick", "thin"), ("clean", "dirty"), ("young", "old"), ("push", "pull"), ("win", "lose"),
    ("inside", "outside"), ("above", "below"), ("before", "after"), ("buy", "sell"),
    ("give", "take"), ("remember", "forget"), ("true", "false"), ("sweet", "sour"),
    ("near", "far"), ("cheap", "expensive"), ("safe", "dangerous"), ("narrow", "wide"),
    ("smooth", "rough"), ("asleep", "awake"), ("question", "answer"), ("day", "night"),
    ("always", "never"), ("float", "sink"), ("entrance", "exit"), ("increase", "decrease"),
]
PLURALS = [
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"),
    ("goose", "geese"), ("man", "men"), ("woman", "women"), ("person", "people"), ("ox", "oxen"),
    ("leaf", "leaves"), ("knife", "knives"), ("wolf", "wolves"), ("half", "halves"),
    ("loaf", "loaves"), ("shelf", "shelves"), ("sheep", "sheep"), ("deer", "deer"),
    ("potato", "potatoes"), ("hero", "heroes"), ("box", "boxes"), ("bus", "buses"),
    ("church", "churches"), ("city", "cities"), ("baby", "babies"), ("story", "stories"),
    ("key", "keys"), ("toy", "toys"), ("dish", "dishes"), ("glass", "glasses"),
    ("watch", "watches"), ("fox", "foxes"), ("berry", "berries"), ("lady", "ladies"),
    ("party", "parties"), ("day", "days"), ("boy", "boys"), ("cat", "cats"), ("apple", "apples"),
    ("wife", "wives"), ("brush", "brushes"),
]
PAST = [
    ("go", "went"), ("run", "ran"), ("eat", "ate"), ("see", "saw"), ("write", "wrote"),
    ("swim", "swam"), ("sing", "sang"), ("drink", "drank"), ("begin", "began"), ("take", "took"),
    ("give", "gave"), ("come", "came"), ("know", "knew"), ("fly", "flew"), ("draw", "drew"),
    ("speak", "spoke"), ("break", "broke"), ("choose", "chose"), ("drive", "drove"),
    ("ride", "rode"), ("buy", "bought"), ("think", "thought"), ("bring", "brought"),
    ("catch", "caught"), ("teach", "taught"), ("sleep", "slept"), ("keep", "kept"),
    ("feel", "felt"), ("leave", "left"), ("build", "built"), ("send", "sent"), ("spend", "spent"),
    ("sit", "sat"), ("stand", "stood"), ("find", "found"), ("tell", "told"), ("sell", "sold"),
    ("walk", "walked"), ("jump", "jumped"), ("play", "played"),
]
FRUIT_OR_VEGETABLE = [
    ("apple", "fruit"), ("banana", "fruit"), ("pear", "fruit"), ("cherry", "fruit"),
    ("grape", "fruit"), ("mango", "fruit"), ("peach", "fruit"), ("plum", "fruit"),
    ("strawberry", "fruit"), ("pineapple", "fruit"), ("watermelon", "fruit"), ("apricot", "fruit"),
    ("carrot", "vegetable"), ("potato", "vegetable"), ("onion", "vegetable"),
    ("cabbage", "vegetable"), ("broccoli", "vegetable"), ("spinach", "vegetable"),
    ("lettuce", "vegetable"), ("celery", "vegetable"), ("cauliflower", "vegetable"),
    ("radish", "vegetable"), ("turnip", "vegetable"), ("leek", "vegetable"),
]
ANIMALS = [
    ("dog", "mammal"), ("horse", "mammal"), ("elephant", "mammal"), ("dolphin", "mammal"),
    ("whale", "mammal"), ("bat", "mammal"), ("tiger", "mammal"), ("rabbit", "mammal"),
    ("eagle", "bird"), ("owl", "bird"), ("penguin", "bird"), ("sparrow", "bird"),
    ("parrot", "bird"), ("ostrich", "bird"), ("salmon", "fish"), ("shark", "fish"),
    ("trout", "fish"), ("tuna", "fish"), ("snake", "reptile"), ("lizard", "reptile"),
    ("crocodile", "reptile"), ("turtle", "reptile"), ("bee", "insect"), ("ant", "insect"),
    ("butterfly", "insect"), ("beetle", "insect"), ("mosquito", "insect"), ("camel", "mammal"),
]
TIPS = [
    ("Give one tip for falling asleep more easily.",
     "Keep a regular bedtime and put screens away for half an hour before you go to bed."),
    ("How can I stay focused while studying?",
     "Work in short blocks of about 25 minutes, keep your phone in another room, and take a short "
     "break after each block."),
    ("Suggest a simple way to drink more water during the day.",
     "Keep a refillable bottle on your desk and take a few sips every time you finish a task."),
    ("What is a good habit for keeping a tidy room?",
     "Spend five minutes every evening putting things back where they belong."),
    ("Give me a tip for remembering new words.",
     "Write each new word in a sentence of your own and review the list again the next day."),
    ("How should I prepare for a job interview?",
     "Read about the company, practise answers to common questions out loud, and prepare two or "
     "three questions of your own."),
    ("What can I do when I feel stressed?",
     "Take a few slow, deep breaths, go for a short walk, and break the problem into smaller steps."),
    ("Suggest a healthy snack.", "A handful of nuts with a piece of fruit makes a healthy snack."),
    ("How do I make a cup of tea?",
     "Boil water, pour it over a tea bag in a cup, wait three to five minutes, then remove the bag."),
    ("Give one tip for saving money.",
     "Write down everything you spend for a month; it shows where small costs add up."),
    ("How can I keep houseplants healthy?",
     "Water them only when the top of the soil is dry and give them enough daylight."),
    ("What is a polite way to decline an invitation?",
     "Thank the person warmly, say that you cannot make it this time, and suggest another day."),
    ("Give a tip for writing a clear email.",
     "Put the main point in the first sentence and keep each paragraph short."),
    ("How can I start running as a beginner?",
     "Alternate one minute of easy running with two minutes of walking, three times a week, and "
     "slowly run longer."),
    ("What should I pack for a day hike?",
     "Water, a snack, a light jacket, sun protection, a map and a charged phone."),
    ("How do I keep bread fresh for longer?",
     "Store it in a cloth bag or a bread box at room temperature, or freeze slices you will not "
     "eat soon."),
    ("Give me a tip for a good presentation.",
     "Practise it out loud several times and keep each slide to one main idea."),
    ("How can I make my mornings less rushed?",
     "Prepare your clothes and bag the night before and get up fifteen minutes earlier."),
    ("Suggest a way to be kind to a neighbour.",
     "Offer to water their plants or collect their post while they are away."),
    ("How can I learn to cook?",
     "Start with a few simple recipes, cook them several times, and then change one ingredient "
     "at a time."),
    ("What is a good way to keep a journal?",
     "Write three sentences every evening about what happened and how you felt."),
    ("Give one tip for sitting at a desk all day.",
     "Stand up and stretch for a minute every half hour."),
    ("How can I make a small room feel bigger?",
     "Use light colours, a mirror on one wall, and keep the floor free of clutter."),
    ("Suggest a quiet hobby.", "Drawing, knitting, reading or doing puzzles are quiet hobbies."),
    ("How do I clean a cutting board?",
     "Wash it with hot soapy water, rinse it well and let it dry standing up."),
    ("Give a tip for keeping a conversation going.",
     "Ask open questions that begin with how or why, and listen to the answers."),
    ("How can I spend less time on my phone?",
     "Turn off notifications you do not need and keep the phone out of the bedroom."),
    ("What is a good way to plan a week?",
     "On Sunday, list the three most important tasks for the week and give each one a day."),
    ("How do I take care of a new puppy?",
     "Give it regular meals, short walks, plenty of sleep and gentle, consistent training."),
    ("Give one tip for learning to play a musical instrument.",
     "Practise a little every day rather than for a long time once a week."),
    ("How can I keep my shoes in good condition?",
     "Let them dry after wet days, clean off dirt, and swap between two pairs."),
    ("Suggest a simple breakfast.", "Oatmeal with sliced banana and a spoonful of honey."),
    ("How can I make a long car journey more pleasant?",
     "Plan a stop every two hours, bring water and snacks, and prepare some music or stories."),
    ("What can I do on a rainy afternoon?",
     "Bake something, read a book, play a board game or start a jigsaw puzzle."),
    ("Give a tip for keeping a budget.",
     "Decide how much you can spend each week and keep that amount separate."),
    ("How do I write a thank-you note?",
     "Name the gift or help, say how it made a difference, and end with a warm wish."),
    ("How can I help a friend who is having a hard day?",
     "Listen without rushing to give advice, and ask what would help."),
    ("Give me a tip for a better night's sleep.",
     "Keep the bedroom cool, dark and quiet, and avoid coffee in the afternoon."),
    ("Suggest a way to start a new habit.",
     "Attach it to something you already do every day, and start very small."),
    ("How can I make my handwriting neater?",
     "Write more slowly, hold the pen loosely and practise a few lines every day."),
]
NAMES = ["Sam", "Maya", "Omar", "Lena", "Nora", "Ivy", "Raj", "Zoe", "Kai", "Mia", "Eli", "Ava",
         "Noah", "Ruth", "Hugo", "Tara"]
ITEMS = ["apples", "pencils", "marbles", "stickers", "books", "cookies", "balloons", "shells",
         "stamps", "cards"]
UNITS = [("minutes", "hours", 60), ("seconds", "minutes", 60), ("days", "weeks", 7),
         ("hours", "days", 24), ("centimeters", "meters", 100), ("grams", "kilograms", 1000),
         ("months", "years", 12), ("millimeters", "centimeters", 10)]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def _a(noun: str) -> str:
    """The noun with its indefinite article: ``"an apple"``, ``"a pear"``."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _arithmetic(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(110):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        out.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
    for _ in range(80):
        a, b = sorted((rng.randint(2, 99), rng.randint(2, 99)), reverse=True)
        out.append((f"Subtract {b} from {a}.", f"{a} minus {b} is {a - b}."))
    for _ in range(80):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        out.append((f"Multiply {a} by {b}.", f"{a} times {b} is {a * b}."))
    for _ in range(50):
        b, q = rng.randint(2, 12), rng.randint(2, 12)
        out.append((f"What is {b * q} divided by {b}?", f"{b * q} divided by {b} is {q}."))
    for _ in range(40):
        n = rng.randint(1, 500)
        kind = "even" if n % 2 == 0 else "odd"
        out.append((f"Is {n} an even or an odd number?", f"{n} is an {kind} number."))
    return out


def _ordering(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(50):
        numbers = rng.sample(range(1, 100), rng.randint(4, 6))
        listed = ", ".join(map(str, numbers))
        out.append((f"Sort these numbers from smallest to largest: {listed}.",
                    ", ".join(map(str, sorted(numbers)))))
    for _ in range(30):
        numbers = rng.sample(range(1, 1000), rng.randint(3, 5))
        listed = ", ".join(map(str, numbers))
        out.append((f"Which is the largest number in this list: {listed}?",
                    f"The largest number is {max(numbers)}."))
    for _ in range(45):
        words = rng.sample(WORDS, rng.randint(3, 5))
        out.append((f"Put these words in alphabetical order: {', '.join(words)}.",
                    ", ".join(sorted(words))))
    return out


def _words(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for a, b in OPPOSITES:
        out.append((f"What is the opposite of the word '{a}'?", f"The opposite of '{a}' is '{b}'."))
    for singular, plural in PLURALS:
        out.append((f"What is the plural of '{singular}'?",
                    f"The plural of '{singular}' is '{plural}'."))
    for verb, past in PAST:
        out.append((f"What is the past tense of '{verb}'?",
                    f"The past tense of '{verb}' is '{past}'."))
    for word in WORDS[:55]:
        out.append((f"Spell the word '{word}' backwards.", word[::-1]))
    for word in rng.sample(WORDS, 55):
        out.append((f"How many letters are in the word '{word}'?",
                    f"The word '{word}' has {len(word)} letters."))
    for word in rng.sample(WORDS, 35):
        out.append((f"Write the word '{word}' in capital letters.", word.upper()))
    for word in rng.sample(WORDS, 30):
        vowels = sum(c in "aeiou" for c in word)
        out.append((f"How many vowels (a, e, i, o, u) are in the word '{word}'?",
                    f"The word '{word}' has {vowels} vowel{'s' if vowels != 1 else ''}."))
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(25):
        out.append((f"Which letter comes after '{letters[i]}' in the alphabet?",
                    f"The letter after '{letters[i]}' is '{letters[i + 1]}'."))
    return out


def _calendar_and_units(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for seq, label in ((DAYS, "day"), (MONTHS, "month")):
        for i, item in enumerate(seq):
            out.append((f"Which {label} comes after {item}?", f"{seq[(i + 1) % len(seq)]}."))
            out.append((f"Which {label} comes before {item}?", f"{seq[i - 1]}."))
    for _ in range(60):
        small, big, factor = rng.choice(UNITS)
        n = rng.randint(2, 12)
        out.append((f"How many {small} are in {n} {big}?",
                    f"There are {n * factor} {small} in {n} {big}."))
    return out


def _stories(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(40):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        out.append((f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
                    f"{name} has {a} + {b} = {a + b} {item}."))
    for _ in range(25):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        a = rng.randint(10, 30)
        b = rng.randint(1, a - 1)
        out.append((f"{name} had {a} {item} and gave away {b}. How many {item} are left?",
                    f"{name} has {a} - {b} = {a - b} {item} left."))
    for thing, kind in FRUIT_OR_VEGETABLE:
        out.append((f"Is {_a(thing)} usually called a fruit or a vegetable?",
                    f"{_a(thing).capitalize()} is {_a(kind)}."))
    for animal, kind in ANIMALS:
        out.append((f"Is {_a(animal)} a mammal, a bird, a fish, a reptile or an insect?",
                    f"{_a(animal).capitalize()} is {_a(kind)}."))
    out.extend(TIPS)
    return out


SECTIONS: list[tuple[str, Callable[[random.Random], list[tuple[str, str]]]]] = [
    ("arithmetic", _arithmetic), ("ordering", _ordering), ("words", _words),
    ("calendar_units", _calendar_and_units), ("everyday", _stories),
]


def benign_rows(seed: int = 0) -> list[dict]:
    """Every benign row: ``{"id", "kind", "instruction", "response"}``, duplicates dropped."""
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    for kind, make in SECTIONS:
        for instruction, response in make(rng):
            if instruction in seen:
                continue
            seen.add(instruction)
            rows.append({"id": f"benign:{len(rows):04d}", "kind": kind,
                         "instruction": instruction, "response": response})
    return rows
