"""Guess the language of a question, and the few localised phrases the engine itself writes.

Detection is deliberately small: the writing system decides for non-Latin scripts, and for Latin
script a count of common function words (plus a few telltale letters such as "ß" or "¿") picks among
the languages we have phrases for. It only has to be right on ordinary one-sentence questions; when
nothing points anywhere the answer is English.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

DEFAULT_LANGUAGE = "en"

PhraseKey = Literal["extractive_intro", "extractive_intro_disabled", "not_found", "sources"]


# Function words per language. Words shared by several languages simply count for each of them.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        """the a an of to in is are was were be been do does did how what which who whom whose when
        where why can could should would will shall may might must i you he she it we they my your our
        their this that these those and or but not with for from on at by about into than there have has
        had if any all some much many long"""
    ),
    "de": _words(
        """der die das den dem des ein eine einer eines einem einen und oder aber nicht kein keine ist
        sind war waren wird werden wurde kann können muss müssen soll sollen darf wie was wer wo wann
        warum wieso weshalb welche welcher welches woher wohin ich du er sie es wir ihr mein dein unser
        mit von zu zum zur im auf für über unter bei nach aus auch noch schon gibt lange viel viele"""
    ),
    "fr": _words(
        """le la les un une des du de d l qu c j n s et ou mais ne pas est sont était sera être avoir a
        ont quel quelle quels quelles que qui quoi comment pourquoi où quand combien je tu il elle nous
        vous ils elles ce cette ces mon ma mes ton ta notre votre leur dans sur pour avec par sans
        au aux y en peut faut est-ce"""
    ),
    "es": _words(
        """el la los las un una unos unas de del al y o pero no es son era fue ser estar está están hay
        qué que cuál cuáles cual quién quien cómo como dónde donde cuándo cuando cuánto cuánta cuántos
        por qué porque yo tú él ella nosotros ellos mi mis tu tus su sus nuestro en con para por sin
        sobre se le lo puedo puede debo"""
    ),
    "pt": _words(
        """o a os as um uma uns umas de do da dos das no na nos nas ao aos e ou mas não é são era foi
        ser estar está estão há qual quais que quem como onde quando quanto quanta quantos por porque
        eu você ele ela nós eles elas meu minha seu sua nosso em com para sem sobre se posso pode
        devo isso isto"""
    ),
    "it": _words(
        """il lo la i gli le un uno una di del dello della dei degli delle al allo alla ai agli alle
        dal dalla nel nella nei sul sulla e o ma non è sono era sarà essere avere ha hanno c l qual
        quale quali che chi cosa come dove quando quanto quanta quanti perché io tu lui lei noi voi
        loro mio mia suo sua nostro in con per tra fra si posso può devo"""
    ),
    "nl": _words(
        """de het een en of maar niet geen is zijn was waren wordt worden werd kan kunnen moet moeten
        mag wat wie waar wanneer waarom hoe hoeveel welk welke ik jij je hij zij ze wij we jullie mijn
        jouw ons onze hun dit dat deze die met van voor naar op aan bij uit over door er ook nog al
        heb hebben heeft lang"""
    ),
}

# Letters that on their own point at one language (a strong hint in a short question).
_TELLTALES: dict[str, str] = {
    **dict.fromkeys("ßäöü", "de"),
    **dict.fromkeys("¿¡ñ", "es"),
    **dict.fromkeys("ãõ", "pt"),
    **dict.fromkeys("çœîï", "fr"),  # "ç" is Portuguese too; "ã"/"õ" and the word counts settle it
    **dict.fromkeys("ìò", "it"),
    "ë": "nl",
}
_TELLTALE_WEIGHT = 1.5

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)?", re.UNICODE)
_ORDER = ("en", "de", "fr", "es", "pt", "it", "nl")  # ties go to the earlier language


def detect_language(text: str) -> str:
    """Return an ISO 639-1 code for `text`: en, de, fr, es, pt, it, nl, or a script's main language."""
    by_script = _language_by_script(text)
    if by_script is not None:
        return by_script
    lowered = text.lower()
    scores = dict.fromkeys(_ORDER, 0.0)
    for word in _WORD.findall(lowered.replace("'", " ").replace("’", " ")):
        for lang, words in _STOPWORDS.items():
            if word in words:
                scores[lang] += 1.0
    for char in set(lowered):
        hinted = _TELLTALES.get(char)
        if hinted is not None:
            scores[hinted] += _TELLTALE_WEIGHT
    best = max(_ORDER, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else DEFAULT_LANGUAGE


def _script_of(char: str) -> str | None:
    code = ord(char)
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF:
        return "kana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if 0x0400 <= code <= 0x04FF:
        return "cyrillic"
    if 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F:
        return "arabic"
    if 0x0590 <= code <= 0x05FF:
        return "hebrew"
    if 0x0370 <= code <= 0x03FF:
        return "greek"
    if 0x0E00 <= code <= 0x0E7F:
        return "thai"
    if 0x0900 <= code <= 0x097F:
        return "devanagari"
    return None


_SCRIPT_LANGUAGE = {
    "hangul": "ko",
    "cyrillic": "ru",
    "arabic": "ar",
    "hebrew": "he",
    "greek": "el",
    "thai": "th",
    "devanagari": "hi",
}


def _language_by_script(text: str) -> str | None:
    """The language of a mostly non-Latin text, or None when the text is mostly Latin script."""
    counts: dict[str, int] = {}
    letters = 0
    for char in text:
        if not unicodedata.category(char).startswith("L"):
            continue
        letters += 1
        script = _script_of(char)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    if letters == 0 or sum(counts.values()) * 2 <= letters:
        return None
    if counts.get("kana", 0) > 0 and counts.get("kana", 0) + counts.get("han", 0) >= counts.get("hangul", 0):
        return "ja"  # Japanese mixes kanji with kana; Chinese has no kana
    script = max(counts, key=lambda name: counts[name])
    if script == "han":
        return "zh"
    if script == "cyrillic" and any(char in "іїєґІЇЄҐ" for char in text):
        return "uk"
    if script == "arabic" and any(char in "پچژگ" for char in text):
        return "fa"
    return _SCRIPT_LANGUAGE.get(script)


_PHRASES: dict[str, dict[PhraseKey, str]] = {
    "en": {
        "extractive_intro": (
            "I couldn't reach the language model, so here are the most relevant passages from your documents:"
        ),
        "extractive_intro_disabled": "Here are the most relevant passages from your documents:",
        "not_found": (
            "I couldn't find anything about that in the knowledge base. "
            "Try rephrasing, or upload a document that covers it."
        ),
        "sources": "Sources",
    },
    "de": {
        "extractive_intro": (
            "Ich konnte das Sprachmodell nicht erreichen. Hier sind die relevantesten Stellen aus Ihren "
            "Dokumenten:"
        ),
        "extractive_intro_disabled": "Hier sind die relevantesten Stellen aus Ihren Dokumenten:",
        "not_found": (
            "Dazu habe ich in der Wissensdatenbank nichts gefunden. Formulieren Sie die Frage anders "
            "oder laden Sie ein Dokument hoch, das das Thema behandelt."
        ),
        "sources": "Quellen",
    },
    "fr": {
        "extractive_intro": (
            "Je n'ai pas pu joindre le modèle de langue ; voici les passages les plus pertinents de vos "
            "documents :"
        ),
        "extractive_intro_disabled": "Voici les passages les plus pertinents de vos documents :",
        "not_found": (
            "Je n'ai rien trouvé à ce sujet dans la base de connaissances. Reformulez la question ou "
            "ajoutez un document qui traite de ce sujet."
        ),
        "sources": "Sources",
    },
    "es": {
        "extractive_intro": (
            "No pude contactar con el modelo de lenguaje, así que aquí están los fragmentos más "
            "relevantes de sus documentos:"
        ),
        "extractive_intro_disabled": "Estos son los fragmentos más relevantes de sus documentos:",
        "not_found": (
            "No encontré nada sobre eso en la base de conocimiento. Intente reformular la pregunta o "
            "suba un documento que trate el tema."
        ),
        "sources": "Fuentes",
    },
    "pt": {
        "extractive_intro": (
            "Não consegui acessar o modelo de linguagem, então aqui estão os trechos mais relevantes dos "
            "seus documentos:"
        ),
        "extractive_intro_disabled": "Aqui estão os trechos mais relevantes dos seus documentos:",
        "not_found": (
            "Não encontrei nada sobre isso na base de conhecimento. Tente reformular a pergunta ou envie "
            "um documento que trate do assunto."
        ),
        "sources": "Fontes",
    },
    "it": {
        "extractive_intro": (
            "Non sono riuscito a raggiungere il modello linguistico, quindi ecco i passaggi più "
            "pertinenti dei tuoi documenti:"
        ),
        "extractive_intro_disabled": "Ecco i passaggi più pertinenti dei tuoi documenti:",
        "not_found": (
            "Non ho trovato nulla al riguardo nella knowledge base. Prova a riformulare la domanda o "
            "carica un documento che tratti l'argomento."
        ),
        "sources": "Fonti",
    },
    "nl": {
        "extractive_intro": (
            "Ik kon het taalmodel niet bereiken, dus hier zijn de meest relevante passages uit je documenten:"
        ),
        "extractive_intro_disabled": "Hier zijn de meest relevante passages uit je documenten:",
        "not_found": (
            "Ik heb daar niets over gevonden in de kennisbank. Probeer de vraag anders te formuleren, "
            "of upload een document dat het onderwerp behandelt."
        ),
        "sources": "Bronnen",
    },
}


def phrase(lang: str, key: PhraseKey) -> str:
    """The localised text for `key`, in English when `lang` has no translation."""
    return _PHRASES.get(lang, _PHRASES[DEFAULT_LANGUAGE])[key]


def all_phrases(key: PhraseKey) -> tuple[str, ...]:
    """Every translation of `key` (used to recognise a model that echoes one of them)."""
    return tuple(table[key] for table in _PHRASES.values())
