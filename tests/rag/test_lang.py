import pytest

from rag.lang import _PHRASES, all_phrases, detect_language, phrase


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is the incubation period?", "en"),
        ("How do I reset my password?", "en"),
        ("Where can I find the VPN config?", "en"),
        ("Wie lange dauert die Inkubationszeit?", "de"),
        ("Wie setze ich mein Passwort zurück?", "de"),
        ("Gibt es eine Urlaubsregelung?", "de"),
        ("Quelle est la durée d'incubation ?", "fr"),
        ("Comment réinitialiser mon mot de passe ?", "fr"),
        ("Où se trouve la configuration du VPN ?", "fr"),
        ("¿Cuál es el periodo de incubación?", "es"),
        ("¿Cómo restablezco mi contraseña?", "es"),
        ("Dónde está la configuración de la VPN?", "es"),
        ("Qual é o período de incubação?", "pt"),
        ("Como faço para redefinir minha senha?", "pt"),
        ("Onde fica a configuração da VPN?", "pt"),
        ("Qual è il periodo di incubazione?", "it"),
        ("Come posso reimpostare la mia password?", "it"),
        ("Dove si trova la configurazione della VPN?", "it"),
        ("Hoe lang duurt de incubatietijd?", "nl"),
        ("Hoe reset ik mijn wachtwoord?", "nl"),
        ("Waar vind ik de VPN-configuratie?", "nl"),
    ],
)
def test_latin_script_questions(question: str, expected: str) -> None:
    assert detect_language(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("潜伏期是多长时间？", "zh"),
        ("潜伏期はどのくらいですか？", "ja"),
        ("잠복기는 얼마나 되나요?", "ko"),
        ("Сколько длится инкубационный период?", "ru"),
        ("Скільки триває інкубаційний період?", "uk"),
        ("ما هي فترة الحضانة؟", "ar"),
        ("دوره نهفتگی چقدر است؟", "fa"),
        ("Πόσο διαρκεί η περίοδος επώασης;", "el"),
    ],
)
def test_non_latin_scripts(question: str, expected: str) -> None:
    assert detect_language(question) == expected


@pytest.mark.parametrize("text", ["", "   ", "VPN", "42?", "Kubernetes HPA"])
def test_no_signal_means_english(text: str) -> None:
    assert detect_language(text) == "en"


def test_a_few_latin_words_in_a_cyrillic_question_do_not_flip_it() -> None:
    assert detect_language("Как настроить VPN на сервере?") == "ru"


def test_every_language_has_every_phrase() -> None:
    keys = set(_PHRASES["en"])
    for lang, table in _PHRASES.items():
        assert set(table) == keys, lang
        assert all(text.strip() for text in table.values()), lang
    assert set(_PHRASES) == {"en", "de", "fr", "es", "pt", "it", "nl"}


def test_phrases_are_localised_and_fall_back_to_english() -> None:
    assert phrase("de", "sources") == "Quellen"
    assert phrase("es", "sources") == "Fuentes"
    assert phrase("en", "extractive_intro").startswith("I couldn't reach the language model")
    assert (
        phrase("en", "extractive_intro_disabled")
        == "Here are the most relevant passages from your documents:"
    )
    assert phrase("ja", "not_found") == phrase("en", "not_found")
    assert phrase("en", "not_found") in all_phrases("not_found")
