"""Sentence sources for the synthetic speech corpus: a small parallel grammar.

Templates over a hand-checked lexicon produce one sentence in English, French, German
and Spanish from the same choices, so the four renderings are word-for-word translations
and share a `text_id` (speech translation trains on such pairs). Each language applies its
own agreement rules: French/Spanish gender and number on articles and adjectives (and
French adjective placement and elision), German case (nominative/accusative/dative),
gender and adjective declension, and verb-second order after a fronted adverb.

Nouns and verbs carry a semantic class ("person", "animal", "thing") so sentences are
sensible, not only grammatical: people buy books, apples do not see dogs.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

LANGUAGES = ("en", "fr", "de", "es")


@dataclass(frozen=True)
class Noun:
    """A noun in four languages. fr/es gender "m"/"f"; de gender "m"/"f"/"n"."""

    en: tuple[str, str]  # singular, plural
    fr: tuple[str, str, str]  # singular, plural, gender
    de: tuple[str, str, str]
    es: tuple[str, str, str]
    kind: str  # person / animal / thing / place


@dataclass(frozen=True)
class Adjective:
    """fr/es forms are (masc sg, fem sg, masc pl, fem pl); de is the undeclined stem."""

    en: str
    fr: tuple[str, str, str, str]
    de: str
    es: tuple[str, str, str, str]
    kinds: tuple[str, ...]
    fr_before: bool = False  # French puts petit, grand, jeune, joli before the noun
    es_estar: bool = False  # Spanish uses "estar" for states (tired), "ser" otherwise


@dataclass(frozen=True)
class Verb:
    """Present tense forms per language: (3rd singular, 3rd plural, 1st singular)."""

    en: tuple[str, str, str]
    fr: tuple[str, str, str]
    de: tuple[str, str, str]
    es: tuple[str, str, str]
    subjects: tuple[str, ...]
    objects: tuple[str, ...] = ()  # empty: intransitive


@dataclass(frozen=True)
class Sentence:
    """One template instance: `text[lang]` for every language, all sharing `text_id`."""

    text_id: str
    template: str
    text: dict[str, str]


P, A, T = "person", "animal", "thing"

NOUNS: tuple[Noun, ...] = (
    Noun(("man", "men"), ("homme", "hommes", "m"), ("Mann", "Männer", "m"), ("hombre", "hombres", "m"), P),
    Noun(("woman", "women"), ("femme", "femmes", "f"), ("Frau", "Frauen", "f"), ("mujer", "mujeres", "f"), P),
    Noun(("girl", "girls"), ("fille", "filles", "f"), ("Mädchen", "Mädchen", "n"), ("niña", "niñas", "f"), P),
    Noun(("teacher", "teachers"), ("professeur", "professeurs", "m"), ("Lehrer", "Lehrer", "m"),
         ("profesor", "profesores", "m"), P),
    Noun(("doctor", "doctors"), ("médecin", "médecins", "m"), ("Arzt", "Ärzte", "m"), ("médico", "médicos", "m"), P),
    Noun(("friend", "friends"), ("ami", "amis", "m"), ("Freund", "Freunde", "m"), ("amigo", "amigos", "m"), P),
    Noun(("baker", "bakers"), ("boulanger", "boulangers", "m"), ("Bäcker", "Bäcker", "m"),
         ("panadero", "panaderos", "m"), P),
    Noun(("dog", "dogs"), ("chien", "chiens", "m"), ("Hund", "Hunde", "m"), ("perro", "perros", "m"), A),
    Noun(("cat", "cats"), ("chat", "chats", "m"), ("Katze", "Katzen", "f"), ("gato", "gatos", "m"), A),
    Noun(("bird", "birds"), ("oiseau", "oiseaux", "m"), ("Vogel", "Vögel", "m"), ("pájaro", "pájaros", "m"), A),
    Noun(("horse", "horses"), ("cheval", "chevaux", "m"), ("Pferd", "Pferde", "n"), ("caballo", "caballos", "m"), A),
    Noun(("cow", "cows"), ("vache", "vaches", "f"), ("Kuh", "Kühe", "f"), ("vaca", "vacas", "f"), A),
    Noun(("mouse", "mice"), ("souris", "souris", "f"), ("Maus", "Mäuse", "f"), ("ratón", "ratones", "m"), A),
    Noun(("apple", "apples"), ("pomme", "pommes", "f"), ("Apfel", "Äpfel", "m"), ("manzana", "manzanas", "f"), T),
    Noun(("book", "books"), ("livre", "livres", "m"), ("Buch", "Bücher", "n"), ("libro", "libros", "m"), T),
    Noun(("car", "cars"), ("voiture", "voitures", "f"), ("Auto", "Autos", "n"), ("coche", "coches", "m"), T),
    Noun(("table", "tables"), ("table", "tables", "f"), ("Tisch", "Tische", "m"), ("mesa", "mesas", "f"), T),
    Noun(("chair", "chairs"), ("chaise", "chaises", "f"), ("Stuhl", "Stühle", "m"), ("silla", "sillas", "f"), T),
    Noun(("ball", "balls"), ("ballon", "ballons", "m"), ("Ball", "Bälle", "m"), ("pelota", "pelotas", "f"), T),
    Noun(("flower", "flowers"), ("fleur", "fleurs", "f"), ("Blume", "Blumen", "f"), ("flor", "flores", "f"), T),
    Noun(("hat", "hats"), ("chapeau", "chapeaux", "m"), ("Hut", "Hüte", "m"), ("sombrero", "sombreros", "m"), T),
    Noun(("letter", "letters"), ("lettre", "lettres", "f"), ("Brief", "Briefe", "m"), ("carta", "cartas", "f"), T),
    Noun(("cup", "cups"), ("tasse", "tasses", "f"), ("Tasse", "Tassen", "f"), ("taza", "tazas", "f"), T),
    Noun(("key", "keys"), ("clé", "clés", "f"), ("Schlüssel", "Schlüssel", "m"), ("llave", "llaves", "f"), T),
    Noun(("bicycle", "bicycles"), ("vélo", "vélos", "m"), ("Fahrrad", "Fahrräder", "n"),
         ("bicicleta", "bicicletas", "f"), T),
)

PLACES: tuple[Noun, ...] = (
    Noun(("garden", "gardens"), ("jardin", "jardins", "m"), ("Garten", "Gärten", "m"), ("jardín", "jardines", "m"),
         "place"),
    Noun(("kitchen", "kitchens"), ("cuisine", "cuisines", "f"), ("Küche", "Küchen", "f"), ("cocina", "cocinas", "f"),
         "place"),
    Noun(("house", "houses"), ("maison", "maisons", "f"), ("Haus", "Häuser", "n"), ("casa", "casas", "f"), "place"),
    Noun(("park", "parks"), ("parc", "parcs", "m"), ("Park", "Parks", "m"), ("parque", "parques", "m"), "place"),
    Noun(("school", "schools"), ("école", "écoles", "f"), ("Schule", "Schulen", "f"), ("escuela", "escuelas", "f"),
         "place"),
)

ADJECTIVES: tuple[Adjective, ...] = (
    Adjective("red", ("rouge", "rouge", "rouges", "rouges"), "rot", ("rojo", "roja", "rojos", "rojas"), (T,)),
    Adjective("brown", ("brun", "brune", "bruns", "brunes"), "braun", ("marrón", "marrón", "marrones", "marrones"),
              (A, T)),
    Adjective("black", ("noir", "noire", "noirs", "noires"), "schwarz", ("negro", "negra", "negros", "negras"),
              (A, T)),
    Adjective("white", ("blanc", "blanche", "blancs", "blanches"), "weiß", ("blanco", "blanca", "blancos", "blancas"),
              (A, T)),
    Adjective("green", ("vert", "verte", "verts", "vertes"), "grün", ("verde", "verde", "verdes", "verdes"), (T,)),
    Adjective("blue", ("bleu", "bleue", "bleus", "bleues"), "blau", ("azul", "azul", "azules", "azules"), (T,)),
    Adjective("yellow", ("jaune", "jaune", "jaunes", "jaunes"), "gelb",
              ("amarillo", "amarilla", "amarillos", "amarillas"), (T,)),
    Adjective("small", ("petit", "petite", "petits", "petites"), "klein",
              ("pequeño", "pequeña", "pequeños", "pequeñas"), (P, A, T), fr_before=True),
    Adjective("big", ("grand", "grande", "grands", "grandes"), "groß", ("grande", "grande", "grandes", "grandes"),
              (P, A, T), fr_before=True),
    Adjective("young", ("jeune", "jeune", "jeunes", "jeunes"), "jung", ("joven", "joven", "jóvenes", "jóvenes"),
              (P, A), fr_before=True),
    Adjective("pretty", ("joli", "jolie", "jolis", "jolies"), "hübsch", ("bonito", "bonita", "bonitos", "bonitas"),
              (P, A, T), fr_before=True),
    Adjective("happy", ("heureux", "heureuse", "heureux", "heureuses"), "glücklich",
              ("feliz", "feliz", "felices", "felices"), (P, A)),
    Adjective("tired", ("fatigué", "fatiguée", "fatigués", "fatiguées"), "müde",
              ("cansado", "cansada", "cansados", "cansadas"), (P, A), es_estar=True),
    Adjective("heavy", ("lourd", "lourde", "lourds", "lourdes"), "schwer", ("pesado", "pesada", "pesados", "pesadas"),
              (T,)),
)

INTRANSITIVE: tuple[Verb, ...] = (
    Verb(("sleeps", "sleep", "sleep"), ("dort", "dorment", "dors"), ("schläft", "schlafen", "schlafe"),
         ("duerme", "duermen", "duermo"), (P, A)),
    Verb(("runs", "run", "run"), ("court", "courent", "cours"), ("läuft", "laufen", "laufe"),
         ("corre", "corren", "corro"), (P, A)),
    Verb(("sings", "sing", "sing"), ("chante", "chantent", "chante"), ("singt", "singen", "singe"),
         ("canta", "cantan", "canto"), (P,)),
    Verb(("waits", "wait", "wait"), ("attend", "attendent", "attends"), ("wartet", "warten", "warte"),
         ("espera", "esperan", "espero"), (P, A)),
    Verb(("dances", "dance", "dance"), ("danse", "dansent", "danse"), ("tanzt", "tanzen", "tanze"),
         ("baila", "bailan", "bailo"), (P,)),
    Verb(("swims", "swim", "swim"), ("nage", "nagent", "nage"), ("schwimmt", "schwimmen", "schwimme"),
         ("nada", "nadan", "nado"), (P, A)),
    Verb(("plays", "play", "play"), ("joue", "jouent", "joue"), ("spielt", "spielen", "spiele"),
         ("juega", "juegan", "juego"), (P, A)),
    Verb(("eats", "eat", "eat"), ("mange", "mangent", "mange"), ("isst", "essen", "esse"),
         ("come", "comen", "como"), (P, A)),
)

TRANSITIVE: tuple[Verb, ...] = (
    Verb(("sees", "see", "see"), ("voit", "voient", "vois"), ("sieht", "sehen", "sehe"), ("ve", "ven", "veo"),
         (P, A), (P, A, T)),
    Verb(("finds", "find", "find"), ("trouve", "trouvent", "trouve"), ("findet", "finden", "finde"),
         ("encuentra", "encuentran", "encuentro"), (P, A), (P, A, T)),
    Verb(("watches", "watch", "watch"), ("regarde", "regardent", "regarde"), ("beobachtet", "beobachten", "beobachte"),
         ("mira", "miran", "miro"), (P, A), (P, A, T)),
    Verb(("hears", "hear", "hear"), ("entend", "entendent", "entends"), ("hört", "hören", "höre"),
         ("oye", "oyen", "oigo"), (P, A), (P, A)),
    Verb(("draws", "draw", "draw"), ("dessine", "dessinent", "dessine"), ("zeichnet", "zeichnen", "zeichne"),
         ("dibuja", "dibujan", "dibujo"), (P,), (P, A, T)),
    Verb(("carries", "carry", "carry"), ("porte", "portent", "porte"), ("trägt", "tragen", "trage"),
         ("lleva", "llevan", "llevo"), (P,), (T,)),
    Verb(("buys", "buy", "buy"), ("achète", "achètent", "achète"), ("kauft", "kaufen", "kaufe"),
         ("compra", "compran", "compro"), (P,), (T,)),
    Verb(("washes", "wash", "wash"), ("lave", "lavent", "lave"), ("wäscht", "waschen", "wasche"),
         ("lava", "lavan", "lavo"), (P,), (A, T)),
    Verb(("paints", "paint", "paint"), ("peint", "peignent", "peins"), ("malt", "malen", "male"),
         ("pinta", "pintan", "pinto"), (P,), (T,)),
    Verb(("has", "have", "have"), ("a", "ont", "ai"), ("hat", "haben", "habe"), ("tiene", "tienen", "tengo"),
         (P,), (A, T)),
)

NUMBERS = {
    "en": ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    "fr": ("deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix"),
    "de": ("zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn"),
    "es": ("dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez"),
}

ADVERBS = {  # sentence-initial time adverbs (German then inverts subject and verb)
    "en": ("Today", "Now", "Often", "Sometimes"),
    "fr": ("Aujourd'hui", "Maintenant", "Souvent", "Parfois"),
    "de": ("Heute", "Jetzt", "Oft", "Manchmal"),
    "es": ("Hoy", "Ahora", "A menudo", "A veces"),
}

# ---------------------------------------------------------------- noun phrases per language


def _starts_with_vowel(word: str) -> bool:
    return word[:1].lower() in "aeiouéèêàâîôûh"


def _en_np(noun: Noun, adj: Adjective | None, definite: bool | None, plural: bool = False) -> str:
    """definite: True "the", False "a/an", None no article (plural with a number)."""
    words = ([adj.en] if adj else []) + [noun.en[1 if plural else 0]]
    if definite is True:
        return " ".join(["the", *words])
    if definite is False:
        return " ".join(["an" if words[0][0] in "aeiou" else "a", *words])
    return " ".join(words)


def _fr_np(noun: Noun, adj: Adjective | None, definite: bool | None, plural: bool = False) -> str:
    word, gender = noun.fr[1 if plural else 0], noun.fr[2]
    if adj is None:
        phrase = [word]
    else:
        form = adj.fr[(2 if plural else 0) + (1 if gender == "f" else 0)]
        phrase = [form, word] if adj.fr_before else [word, form]
    if definite is None:
        return " ".join(phrase)
    if plural:
        article = "les" if definite else "des"
    elif definite:
        # Elision: le/la before a vowel or mute h ("l'oiseau", "l'école").
        article = "l'" if _starts_with_vowel(phrase[0]) else ("la" if gender == "f" else "le")
    else:
        article = "une" if gender == "f" else "un"
    return (article + phrase[0] if article == "l'" else f"{article} {phrase[0]}") + "".join(" " + w for w in phrase[1:])


# German articles by case, then gender (m, f, n, plural).
_DE_DEF = {"nom": ("der", "die", "das", "die"), "acc": ("den", "die", "das", "die"), "dat": ("dem", "der", "dem", "den")}
_DE_INDEF = {"nom": ("ein", "eine", "ein", ""), "acc": ("einen", "eine", "ein", ""), "dat": ("einem", "einer", "einem", "")}
# Adjective endings: weak (after the definite article), mixed (after ein), strong (no article).
_DE_WEAK = {"nom": ("e", "e", "e", "en"), "acc": ("en", "e", "e", "en"), "dat": ("en", "en", "en", "en")}
_DE_MIXED = {"nom": ("er", "e", "es", "en"), "acc": ("en", "e", "es", "en"), "dat": ("en", "en", "en", "en")}
_DE_STRONG_PLURAL = {"nom": "e", "acc": "e", "dat": "en"}


def _de_inflect(stem: str, ending: str) -> str:
    # "müde" + "en" -> "müden", not "müdeen".
    return stem + (ending[1:] if stem.endswith("e") and ending.startswith("e") else ending)


def _de_np(noun: Noun, adj: Adjective | None, definite: bool | None, case: str, plural: bool = False) -> str:
    slot = 3 if plural else "mfn".index(noun.de[2])
    word = noun.de[1 if plural else 0]
    if definite is None:
        article, ending = "", _DE_STRONG_PLURAL[case] if plural else _DE_MIXED[case][slot]
    elif definite:
        article, ending = _DE_DEF[case][slot], _DE_WEAK[case][slot]
    else:
        article, ending = _DE_INDEF[case][slot], _DE_MIXED[case][slot]
    words = [article] if article else []
    if adj is not None:
        words.append(_de_inflect(adj.de, ending))
    return " ".join([*words, word])


def _es_np(noun: Noun, adj: Adjective | None, definite: bool | None, plural: bool = False) -> str:
    word, gender = noun.es[1 if plural else 0], noun.es[2]
    phrase = [word]
    if adj is not None:
        phrase.append(adj.es[(2 if plural else 0) + (1 if gender == "f" else 0)])
    if definite is True:
        article = ("las" if gender == "f" else "los") if plural else ("la" if gender == "f" else "el")
        phrase.insert(0, article)
    elif definite is False:
        phrase.insert(0, "una" if gender == "f" else "un")
    return " ".join(phrase)


def _es_object(noun: Noun, np: str) -> str:
    """Spanish marks a human direct object with "a" ("ve a la niña"; a + el = al)."""
    if noun.kind != P:
        return np
    return "al" + np[2:] if np.startswith("el ") else "a " + np


def _np(lang: str, noun: Noun, adj: Adjective | None, definite: bool | None, case: str = "nom",
        plural: bool = False) -> str:
    if lang == "en":
        return _en_np(noun, adj, definite, plural)
    if lang == "fr":
        return _fr_np(noun, adj, definite, plural)
    if lang == "de":
        return _de_np(noun, adj, definite, case, plural)
    return _es_np(noun, adj, definite, plural)


def _finish(text: str, lang: str, question: bool = False) -> str:
    text = text[0].upper() + text[1:]
    if question:
        # French typography puts a space before "?"; Spanish opens with "¿".
        return {"fr": text + " ?", "es": "¿" + text + "?"}.get(lang, text + "?")
    return text + "."


# ---------------------------------------------------------------- templates


def _pick(rng: random.Random, items, kinds=None, exclude=()):
    pool = [x for x in items if (kinds is None or getattr(x, "kind", None) in kinds) and x not in exclude]
    return rng.choice(pool)


def _pick_adj(rng: random.Random, noun: Noun) -> Adjective:
    return rng.choice([a for a in ADJECTIVES if noun.kind in a.kinds])


def _t_intransitive(rng):
    verb = rng.choice(INTRANSITIVE)
    noun = _pick(rng, NOUNS, verb.subjects)
    adj = _pick_adj(rng, noun)
    return {lang: _finish(f"{_np(lang, noun, adj, True)} {getattr(verb, lang)[0]}", lang) for lang in LANGUAGES}


def _t_transitive(rng):
    verb = rng.choice(TRANSITIVE)
    subj = _pick(rng, NOUNS, verb.subjects)
    obj = _pick(rng, NOUNS, verb.objects, exclude=(subj,))
    adj = _pick_adj(rng, obj)
    subj_definite = rng.random() < 0.6
    out = {}
    for lang in LANGUAGES:
        o = _np(lang, obj, adj, True, case="acc")
        if lang == "es":
            o = _es_object(obj, o)
        out[lang] = _finish(f"{_np(lang, subj, None, subj_definite)} {getattr(verb, lang)[0]} {o}", lang)
    return out


def _t_predicate(rng):
    noun = _pick(rng, NOUNS)
    adj = _pick_adj(rng, noun)
    fem = noun.fr[2] == "f"
    return {
        "en": _finish(f"{_np('en', noun, None, True)} is {adj.en}", "en"),
        "fr": _finish(f"{_np('fr', noun, None, True)} est {adj.fr[1 if fem else 0]}", "fr"),
        # Predicative adjectives are not declined in German.
        "de": _finish(f"{_np('de', noun, None, True)} ist {adj.de}", "de"),
        "es": _finish(f"{_np('es', noun, None, True)} {'está' if adj.es_estar else 'es'} "
                      f"{adj.es[1 if noun.es[2] == 'f' else 0]}", "es"),
    }


def _t_location(rng):
    noun = _pick(rng, NOUNS)
    place = rng.choice(PLACES)
    de_place = _np("de", place, None, True, case="dat")
    # "in dem" contracts to "im" before masculine and neuter nouns.
    de_prep = "im " + de_place.split(" ", 1)[1] if de_place.startswith("dem ") else "in " + de_place
    return {
        "en": _finish(f"{_np('en', noun, None, True)} is in {_np('en', place, None, True)}", "en"),
        "fr": _finish(f"{_np('fr', noun, None, True)} est dans {_np('fr', place, None, True)}", "fr"),
        "de": _finish(f"{_np('de', noun, None, True)} ist {de_prep}", "de"),
        "es": _finish(f"{_np('es', noun, None, True)} está en {_np('es', place, None, True)}", "es"),
    }


def _t_adverb(rng):
    verb = rng.choice(INTRANSITIVE)
    noun = _pick(rng, NOUNS, verb.subjects)
    i = rng.randrange(len(ADVERBS["en"]))
    out = {}
    for lang in LANGUAGES:
        np, v, adv = _np(lang, noun, None, True), getattr(verb, lang)[0], ADVERBS[lang][i]
        # German is verb-second: "Heute schläft der Hund".
        out[lang] = _finish(f"{adv} {v} {np}" if lang == "de" else f"{adv} {np} {v}", lang)
    return out


def _t_count(rng):
    verb = rng.choice([v for v in TRANSITIVE if v.en[0] in ("sees", "has", "buys", "finds")])
    noun = _pick(rng, NOUNS, verb.objects)
    adj = _pick_adj(rng, noun)
    n = rng.randrange(len(NUMBERS["en"]))
    out = {}
    for lang in LANGUAGES:
        np = f"{NUMBERS[lang][n]} {_np(lang, noun, adj, None, case='acc', plural=True)}"
        v = getattr(verb, lang)[2]
        if lang == "en":
            out[lang] = _finish(f"I {v} {np}", lang)
        elif lang == "fr":
            out[lang] = _finish(f"j'{v} {np}" if _starts_with_vowel(v) else f"je {v} {np}", lang)
        elif lang == "de":
            out[lang] = _finish(f"ich {v} {np}", lang)
        else:  # Spanish drops the subject pronoun
            out[lang] = _finish(f"{v} {'a ' + np if noun.kind == P else np}", lang)
    return out


def _t_plural(rng):
    verb = rng.choice(INTRANSITIVE)
    noun = _pick(rng, NOUNS, verb.subjects)
    adj = _pick_adj(rng, noun)
    return {lang: _finish(f"{_np(lang, noun, adj, True, plural=True)} {getattr(verb, lang)[1]}", lang)
            for lang in LANGUAGES}


def _t_coordination(rng):
    verb = rng.choice(INTRANSITIVE)
    a = _pick(rng, NOUNS, verb.subjects)
    b = _pick(rng, NOUNS, verb.subjects, exclude=(a,))
    conj = {"en": "and", "fr": "et", "de": "und", "es": "y"}
    out = {}
    for lang in LANGUAGES:
        both = f"{_np(lang, a, None, True)} {conj[lang]} {_np(lang, b, None, True)}"
        out[lang] = _finish(f"{both} {getattr(verb, lang)[1]}", lang)
    return out


def _t_question(rng):
    noun = _pick(rng, NOUNS)
    return {
        "en": _finish(f"where is {_np('en', noun, None, True)}", "en", question=True),
        "fr": _finish(f"où est {_np('fr', noun, None, True)}", "fr", question=True),
        "de": _finish(f"wo ist {_np('de', noun, None, True)}", "de", question=True),
        "es": _finish(f"dónde está {_np('es', noun, None, True)}", "es", question=True),
    }


TEMPLATES = {
    "intransitive": _t_intransitive,
    "transitive": _t_transitive,
    "predicate": _t_predicate,
    "location": _t_location,
    "adverb": _t_adverb,
    "count": _t_count,
    "plural": _t_plural,
    "coordination": _t_coordination,
    "question": _t_question,
}


def make_text_id(english: str) -> str:
    """A stable id for a sentence: the same English text always gets the same id."""
    return "t" + hashlib.sha1(english.encode("utf-8")).hexdigest()[:12]


def random_sentence(rng: random.Random) -> Sentence:
    """Draw one template instance; all languages render the same choices."""
    name = rng.choice(sorted(TEMPLATES))
    text = TEMPLATES[name](rng)
    return Sentence(text_id=make_text_id(text["en"]), template=name, text=text)


def sentences(seed: int, count: int) -> list[Sentence]:
    """`count` parallel sentences, deterministic given `seed`."""
    rng = random.Random(seed)
    return [random_sentence(rng) for _ in range(count)]
