import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.odata import (
    And,
    Call,
    Compare,
    FilterError,
    In,
    Lambda,
    Not,
    Or,
    Path,
    SearchAnd,
    SearchOr,
    SearchTerm,
    analyze,
    any_of,
    compile_filter,
    eq,
    evaluate,
    evaluate_search,
    literal,
    parse_filter,
    parse_search,
    search_properties,
)

INVALID_FILTER = r"^Invalid filter clause"
SKU = "184efa21-98c3-4e5d-95ab-d07053a96e67"


def matches(text: str, obj: dict) -> bool:
    return evaluate(parse_filter(text), obj)


# ------------------------------------------------------------------------------- keywords and names


@pytest.mark.parametrize(
    "text",
    [
        "displayName eq 'A'",
        "displayName EQ 'A'",
        "displayName Eq 'A'",
        "displayName eq 'A' AND mail eq 'a@x.com'",
        "displayName eq 'A' and mail eq 'a@x.com'",
        "NOT(displayName eq 'B')",
        "not(displayName eq 'B')",
        "not (displayName eq 'B')",
        "startsWith(displayName,'a')",
        "startswith(displayName,'a')",
        "STARTSWITH(displayName,'a')",
        "endsWith(displayName,'A')",
        "ENDSWITH(displayName,'a')",
        "contains(displayName,'a')",
        "otherMails/ANY(m: m eq 'a@x.com')",
        "otherMails/All(m: m eq 'a@x.com')",
        "displayName IN ('A','B')",
        "accountEnabled eq True",
        "accountEnabled eq TRUE",
        "manager eq NULL",
        "manager eq Null",
    ],
)
def test_keywords_and_function_names_are_case_insensitive(text):
    obj = {"displayName": "A", "mail": "a@x.com", "otherMails": ["a@x.com"], "accountEnabled": True}
    assert matches(text, obj)


def test_not_without_space_before_paren_parses():
    assert parse_filter("NOT(displayName eq 'x')") == Not(Compare("eq", Path(("displayName",)), "x"))
    assert parse_filter("not(displayName eq 'x')") == parse_filter("not (displayName eq 'x')")


@pytest.mark.parametrize(
    "name",
    [
        "allowExternalSenders",
        "nullable",
        "notes",
        "anyThing",
        "inheritance",
        "orgId",
        "equipment",
        "andromeda",
        "trueName",
        "extension_824667ba11b6468baf6ac13ac3c62c81_AuthenticationType",
    ],
)
def test_identifiers_beginning_with_keywords_are_plain_property_names(name):
    assert parse_filter(f"{name} eq 'v'") == Compare("eq", Path((name,)), "v")
    assert matches(f"{name} eq 'v'", {name: "v"})
    assert not matches(f"{name} eq 'v'", {name: "w"})


def test_property_paths_with_slashes_parse_to_segments():
    assert parse_filter("onPremisesExtensionAttributes/extensionAttribute1 eq 'x'") == Compare(
        "eq", Path(("onPremisesExtensionAttributes", "extensionAttribute1")), "x"
    )
    assert parse_filter("assignedLicenses/$count eq 0") == Compare(
        "eq", Path(("assignedLicenses", "$count")), 0
    )


def test_nested_property_paths_evaluate_inside_complex_values():
    obj = {
        "onPremisesExtensionAttributes": {"extensionAttribute1": "Blue"},
        "employeeOrgData": {"costCenter": "CC-1", "division": None},
        "signInActivity": {"lastSignInDateTime": "2023-06-01T10:00:00Z"},
    }
    assert matches("onPremisesExtensionAttributes/extensionAttribute1 eq 'blue'", obj)
    assert matches("onPremisesExtensionAttributes/extensionAttribute2 eq null", obj)
    assert matches("employeeOrgData/costCenter eq 'CC-1'", obj)
    assert matches("employeeOrgData/division eq null", obj)
    assert matches("signInActivity/lastSignInDateTime le 2024-01-01T00:00:00Z", obj)
    assert not matches("signInActivity/lastSignInDateTime le 2023-01-01T00:00:00Z", obj)
    assert matches("signInActivity/lastSignInDateTime eq null", {})


def test_count_segment_is_collection_length_and_zero_when_missing():
    assert matches("assignedLicenses/$count eq 0", {"assignedLicenses": []})
    assert matches("assignedLicenses/$count eq 0", {})
    assert matches("assignedLicenses/$count eq 0", {"assignedLicenses": None})
    assert matches("assignedLicenses/$count gt 1", {"assignedLicenses": [{}, {}]})
    assert not matches("assignedLicenses/$count eq 0", {"assignedLicenses": [{"skuId": SKU}]})


# -------------------------------------------------------------------------------------------- lambdas


def test_any_with_startswith_on_element():
    text = "proxyAddresses/any(x:startsWith(x,'smtp:'))"
    assert matches(text, {"proxyAddresses": ["X500:/o=a", "SMTP:a@x.com"]})
    assert not matches(text, {"proxyAddresses": ["X500:/o=a"]})
    assert not matches(text, {})


def test_any_with_space_after_colon_compares_elements():
    text = "otherMails/any(m: m eq 'a@b.com')"
    assert matches(text, {"otherMails": ["c@d.com", "A@B.com"]})
    assert not matches(text, {"otherMails": ["c@d.com"]})


def test_any_resolves_variable_paths_inside_elements_against_bare_guid():
    text = f"assignedLicenses/any(x:x/skuId eq {SKU})"
    assert parse_filter(text) == Lambda(
        "any", Path(("assignedLicenses",)), "x", Compare("eq", Path(("skuId",), "x"), SKU)
    )
    assert matches(text, {"assignedLicenses": [{"skuId": "other"}, {"skuId": SKU.upper()}]})
    assert not matches(text, {"assignedLicenses": [{"skuId": "other"}]})


def test_not_any_on_group_types():
    assert matches("groupTypes/any(c:c eq 'Unified')", {"groupTypes": ["Unified"]})
    assert not matches("not(groupTypes/any(c:c eq 'Unified'))", {"groupTypes": ["Unified"]})
    assert matches("not(groupTypes/any(c:c eq 'Unified'))", {"groupTypes": []})
    assert matches("not(groupTypes/any(c:c eq 'Unified'))", {})


def test_all_requires_every_element_and_is_true_for_empty_collection():
    text = "otherMails/all(m: endsWith(m, '@x.com'))"
    assert matches(text, {"otherMails": ["a@x.com", "b@X.COM"]})
    assert not matches(text, {"otherMails": ["a@x.com", "b@y.com"]})
    assert matches(text, {"otherMails": []})


def test_any_without_argument_means_collection_is_not_empty():
    assert parse_filter("otherMails/any()") == Lambda("any", Path(("otherMails",)), None, None)
    assert matches("otherMails/any()", {"otherMails": ["a@x.com"]})
    assert not matches("otherMails/any()", {"otherMails": []})
    assert not matches("otherMails/any()", {})


def test_all_without_argument_is_rejected():
    with pytest.raises(FilterError, match=INVALID_FILTER):
        parse_filter("otherMails/all()")


def test_lambda_variable_does_not_leak_outside_its_lambda():
    node = parse_filter("otherMails/any(x: x eq 'a') and x eq 'b'")
    assert node.operands[1] == Compare("eq", Path(("x",)), "b")
    assert matches("otherMails/any(x: x eq 'a') and x eq 'b'", {"otherMails": ["a"], "x": "b"})


# ------------------------------------------------------------------------------------------- literals


def test_string_literals_unescape_doubled_quotes_and_keep_unicode():
    assert parse_filter("surname eq 'O''Brien'") == Compare("eq", Path(("surname",)), "O'Brien")
    assert parse_filter("surname eq ''''") == Compare("eq", Path(("surname",)), "'")
    assert parse_filter("surname eq ''") == Compare("eq", Path(("surname",)), "")
    assert parse_filter("displayName eq 'Zoë Ångström 日本'").value == "Zoë Ångström 日本"
    assert parse_filter("displayName eq 'a and b or not c'").value == "a and b or not c"


def test_numbers_booleans_null_guids_and_dates_parse_to_python_values():
    assert parse_filter("n eq 42").value == 42
    assert parse_filter("n eq -7").value == -7
    assert parse_filter("n eq 1.5").value == 1.5
    assert parse_filter("b eq true").value is True
    assert parse_filter("b eq false").value is False
    assert parse_filter("b eq null").value is None
    assert parse_filter(f"skuId eq {SKU}").value == SKU
    assert parse_filter("d eq 2021-01-01").value == date(2021, 1, 1)
    assert parse_filter("t eq 2021-01-01T00:00:00Z").value == datetime(2021, 1, 1, tzinfo=UTC)
    assert parse_filter("t eq 2021-01-01T00:00:00.25Z").value == datetime(2021, 1, 1, 0, 0, 0, 250000, UTC)
    assert parse_filter("t eq 2021-01-01T02:00:00+02:00").value == datetime(2021, 1, 1, tzinfo=UTC)


def test_guid_starting_with_letters_is_a_literal_not_a_name():
    assert parse_filter("id eq deadbeef-98c3-4e5d-95ab-d07053a96e67").value == (
        "deadbeef-98c3-4e5d-95ab-d07053a96e67"
    )


def test_literal_on_left_is_mirrored_to_property_on_left():
    assert parse_filter("5 lt n") == Compare("gt", Path(("n",)), 5)
    assert parse_filter("'x' eq displayName") == Compare("eq", Path(("displayName",)), "x")


# ------------------------------------------------------------------------------- operators, precedence


def test_and_binds_tighter_than_or():
    a, b, c = (Compare("eq", Path((name,)), 1) for name in "abc")
    assert parse_filter("a eq 1 or b eq 1 and c eq 1") == Or((a, And((b, c))))
    assert parse_filter("(a eq 1 or b eq 1) and c eq 1") == And((Or((a, b)), c))


def test_not_applies_to_the_parenthesised_clause_only():
    node = parse_filter("not(a eq 1) and b eq 1")
    assert node == And((Not(Compare("eq", Path(("a",)), 1)), Compare("eq", Path(("b",)), 1)))


def test_in_list_parses_literals_and_matches_any():
    assert parse_filter("department in ('Sales', 'HR')") == In(Path(("department",)), ("Sales", "HR"))
    assert matches("department in ('Sales','HR')", {"department": "hr"})
    assert not matches("department in ('Sales','HR')", {"department": "IT"})
    assert matches("department in ('Sales', null)", {})
    assert matches("n in (1, 2)", {"n": 2})


def test_in_with_square_brackets_is_rejected():
    with pytest.raises(FilterError, match=INVALID_FILTER):
        parse_filter("department in ['Sales','HR']")


def test_functions_parse_with_canonical_names():
    assert parse_filter("STARTSWITH(displayName,'a')") == Call("startsWith", Path(("displayName",)), "a")
    assert parse_filter("endswith(mail, '@x.com')") == Call("endsWith", Path(("mail",)), "@x.com")


# ------------------------------------------------------------------------------------------ evaluation


def test_string_comparisons_ignore_case():
    obj = {"displayName": "Contoso Admin"}
    assert matches("displayName eq 'CONTOSO admin'", obj)
    assert not matches("displayName ne 'contoso ADMIN'", obj)
    assert matches("startsWith(displayName,'contoso')", obj)
    assert matches("endsWith(displayName,'ADMIN')", obj)
    assert matches("contains(displayName,'SO AD')", obj)
    assert matches("displayName ge 'contoso'", obj)
    assert matches("displayName lt 'D'", obj)
    assert matches("displayName gt 'b'", obj)
    assert not matches("displayName le 'b'", obj)


def test_eq_null_matches_missing_and_null_and_ne_null_the_opposite():
    assert matches("mail eq null", {})
    assert matches("mail eq null", {"mail": None})
    assert not matches("mail eq null", {"mail": "a@x.com"})
    assert matches("mail ne null", {"mail": "a@x.com"})
    assert not matches("mail ne null", {"mail": None})
    assert not matches("mail ne null", {})


def test_ne_value_is_true_for_missing_property():
    assert matches("companyName ne 'Contoso'", {})
    assert matches("companyName ne 'Contoso'", {"companyName": "Fabrikam"})


def test_ordering_against_null_is_always_false():
    for op in ("gt", "ge", "lt", "le"):
        assert not matches(f"n {op} null", {"n": 1})
        assert not matches(f"n {op} null", {})
        assert not matches(f"n {op} 1", {})


def test_eq_on_collection_matches_any_element():
    obj = {"proxyAddresses": ["SMTP:a@x.com", "smtp:b@x.com"], "businessPhones": ["+1 555"]}
    assert matches("proxyAddresses eq 'smtp:a@x.com'", obj)
    assert not matches("proxyAddresses eq 'smtp:c@x.com'", obj)
    assert matches("proxyAddresses ne 'smtp:c@x.com'", obj)
    assert not matches("proxyAddresses ne 'smtp:b@x.com'", obj)
    assert matches("businessPhones eq '+1 555'", obj)
    assert not matches("otherMails eq 'a@x.com'", {"otherMails": []})


def test_booleans_compare_as_booleans_not_strings_or_numbers():
    assert matches("accountEnabled eq true", {"accountEnabled": True})
    assert not matches("accountEnabled eq true", {"accountEnabled": False})
    assert not matches("accountEnabled eq true", {"accountEnabled": "true"})
    assert not matches("accountEnabled eq 'true'", {"accountEnabled": True})
    assert not matches("accountEnabled eq true", {"accountEnabled": 1})
    assert not matches("n eq 1", {"n": True})
    assert matches("accountEnabled ne true", {"accountEnabled": False})


def test_numbers_compare_as_numbers():
    assert matches("n eq 2", {"n": 2.0})
    assert matches("n gt 1.5", {"n": 2})
    assert matches("n lt 10", {"n": 9})
    assert not matches("n lt 10", {"n": "9"})


def test_datetime_strings_compare_as_datetimes():
    obj = {"createdDateTime": "2024-03-01T12:00:00.1234567Z"}
    assert matches("createdDateTime ge 2024-03-01T12:00:00Z", obj)
    assert matches("createdDateTime lt 2024-03-01T12:00:01Z", obj)
    assert matches("createdDateTime gt 2024-03-01T13:00:00+02:00", obj)
    assert matches("createdDateTime eq 2024-03-01T12:00:00Z", {"createdDateTime": "2024-03-01T12:00:00Z"})
    assert matches("createdDateTime ge 2024-03-01", obj)
    assert matches("createdDateTime eq 2024-03-01", obj)
    assert not matches("createdDateTime ge 2024-01-01T00:00:00Z", {"createdDateTime": "not a date"})
    assert not matches("createdDateTime ge 2024-01-01T00:00:00Z", {"createdDateTime": 5})


def test_evaluate_keeps_true_and_one_apart_although_their_trees_are_equal():
    assert evaluate(parse_filter("n eq 1"), {"n": 1})
    assert not evaluate(parse_filter("n eq true"), {"n": 1})
    assert evaluate(parse_filter("n eq true"), {"n": True})


def test_compile_filter_returns_reusable_predicate():
    predicate = compile_filter("accountEnabled eq true and startsWith(displayName,'a')")
    users = [
        {"displayName": "Alice", "accountEnabled": True},
        {"displayName": "Bob", "accountEnabled": True},
        {"displayName": "Adam", "accountEnabled": False},
        {"displayName": "anna", "accountEnabled": True},
    ]
    assert [user["displayName"] for user in users if predicate(user)] == ["Alice", "anna"]


# ----------------------------------------------------------------------------- filters users write


@pytest.mark.parametrize(
    ("text", "matching", "not_matching"),
    [
        ("endsWith(mail,'@contoso.com')", {"mail": "a@Contoso.com"}, {"mail": "a@contoso.com.evil"}),
        (
            "startsWith(department, 'IT-service')",
            {"department": "it-service desk"},
            {"department": "IT service"},
        ),
        (
            "companyName ne null and NOT(companyName eq 'Contoso')",
            {"companyName": "Fabrikam"},
            {"companyName": "contoso"},
        ),
        (
            "onPremisesSyncEnabled eq null and userType eq 'Member'",
            {"userType": "Member"},
            {"userType": "Member", "onPremisesSyncEnabled": True},
        ),
        ("mail eq 'someone@contoso.com'", {"mail": "SomeOne@contoso.com"}, {"mail": "someone@contoso.co"}),
        (
            "extension_824667ba11b6468baf6ac13ac3c62c81_AuthenticationType eq 'standard' and "
            "(extension_824667ba11b6468baf6ac13ac3c62c81_AccountType eq 'internal' or "
            "extension_824667ba11b6468baf6ac13ac3c62c81_AccountType eq 'external')",
            {
                "extension_824667ba11b6468baf6ac13ac3c62c81_AuthenticationType": "standard",
                "extension_824667ba11b6468baf6ac13ac3c62c81_AccountType": "external",
            },
            {
                "extension_824667ba11b6468baf6ac13ac3c62c81_AuthenticationType": "standard",
                "extension_824667ba11b6468baf6ac13ac3c62c81_AccountType": "partner",
            },
        ),
        ("mail ne null", {"mail": "a@x.com"}, {}),
        ("accountEnabled eq true", {"accountEnabled": True}, {"accountEnabled": False}),
        ("securityEnabled eq true", {"securityEnabled": True}, {"securityEnabled": None}),
        ("startswith(displayName,'Contoso')", {"displayName": "contoso HR"}, {"displayName": "The Contoso"}),
        ("onPremisesSyncEnabled eq true", {"onPremisesSyncEnabled": True}, {}),
    ],
)
def test_filters_users_write_match_and_reject(text, matching, not_matching):
    predicate = compile_filter(text)
    assert predicate(matching)
    assert not predicate(not_matching)


def test_company_name_not_example_checks_operators_and_property():
    features = analyze(parse_filter("companyName ne null and NOT(companyName eq 'Contoso')"))
    assert {"ne", "not", "eq"} <= features.operators
    assert features.operators == {"ne", "neNull", "not", "eq", "and"}
    assert features.properties == {"companyName"}
    assert features.property_operators["companyName"] == {"ne", "neNull", "eq", "not"}


# -------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text",
    [
        "",
        "displayName eq",
        "eq 'x'",
        "(displayName eq 'x'",
        "displayName eq 'x')",
        "displayName eq 'x",
        "surname eq 'O'Brien'",
        "displayName equals 'x'",
        "displayName eq 'x' and",
        "displayName eq 'x' eq 'y'",
        "displayName",
        "true",
        "not displayName",
        "not displayName eq 'x'",
        "displayName eq mail",
        "'a' eq 'a'",
        "displayName eq 'x' displayName eq 'y'",
        "startsWith(displayName, mail)",
        "startsWith('x', displayName)",
        "otherMails/any(m m eq 'a')",
        "otherMails/any(m: m)",
        "a/$top eq 1",
        "$count eq 1",
        "t eq 2021-01-01T00:00:00",
        "t eq 2021-13-01",
        "n eq 1.",
        "displayName in ()",
        'displayName eq "x"',
    ],
)
def test_malformed_filters_raise_invalid_filter_clause(text):
    with pytest.raises(FilterError, match=INVALID_FILTER):
        parse_filter(text)


def test_syntax_error_reports_position_and_text():
    with pytest.raises(FilterError) as raised:
        parse_filter("displayName eq")
    assert str(raised.value) == "Invalid filter clause: Syntax error at position 14 in 'displayName eq'."


def test_unterminated_string_is_named():
    with pytest.raises(FilterError, match="Unterminated string literal at position 15"):
        parse_filter("displayName eq 'abc")


def test_unknown_function_is_named():
    with pytest.raises(FilterError, match="Unknown function 'foo'"):
        parse_filter("foo(displayName)")
    with pytest.raises(FilterError, match="Unknown function 'substringof'"):
        parse_filter("substringof('a', displayName)")


def test_wrong_function_arity_is_rejected():
    with pytest.raises(FilterError, match="startsWith takes 2 arguments, 1 given"):
        parse_filter("startsWith(displayName)")
    with pytest.raises(FilterError, match="endsWith takes 2 arguments, 3 given"):
        parse_filter("endsWith(displayName,'a','b')")


# ------------------------------------------------------------------------------------------- analyze


def test_analyze_reports_function_and_property():
    features = analyze(parse_filter("endsWith(mail,'@contoso.com')"))
    assert features.operators == {"endsWith"}
    assert features.properties == {"mail"}
    assert features.property_operators == {"mail": {"endsWith"}}
    assert features.paths == {"mail"}


def test_analyze_reports_nested_paths_with_top_level_property():
    features = analyze(parse_filter("onPremisesExtensionAttributes/extensionAttribute1 eq 'x'"))
    assert features.properties == {"onPremisesExtensionAttributes"}
    assert features.paths == {"onPremisesExtensionAttributes/extensionAttribute1"}
    assert features.property_operators == {"onPremisesExtensionAttributes": {"eq"}}


def test_analyze_resolves_lambda_variables_to_collection_path():
    features = analyze(parse_filter(f"assignedLicenses/any(x:x/skuId eq {SKU})"))
    assert features.operators == {"any", "eq"}
    assert features.properties == {"assignedLicenses"}
    assert features.paths == {"assignedLicenses", "assignedLicenses/skuId"}
    assert features.property_operators == {"assignedLicenses": {"any", "eq"}}


def test_analyze_reports_count_and_eq_null():
    features = analyze(parse_filter("assignedLicenses/$count eq 0 or manager eq null"))
    assert features.operators == {"count", "eq", "or", "eqNull"}
    assert features.paths == {"assignedLicenses/$count", "manager"}
    assert features.property_operators["assignedLicenses"] == {"count", "eq"}
    assert features.property_operators["manager"] == {"eq", "eqNull"}


def test_analyze_marks_properties_used_under_not():
    features = analyze(parse_filter("not(groupTypes/any(c:c eq 'Unified')) and displayName in ('a')"))
    assert features.operators == {"not", "any", "eq", "and", "in"}
    assert features.property_operators == {"groupTypes": {"not", "any", "eq"}, "displayName": {"in"}}


def test_id_eq_values_lists_ids_joined_by_or():
    assert analyze(parse_filter("id eq 'a' or id eq 'b'")).id_eq_values == ("a", "b")
    assert analyze(parse_filter("id eq 'a'")).id_eq_values == ("a",)
    assert analyze(parse_filter("(id eq 'a' or id eq 'b') or id eq 'c'")).id_eq_values == ("a", "b", "c")


@pytest.mark.parametrize(
    "text",
    [
        "id eq 'a' and displayName eq 'x'",
        "id eq 'a' or displayName eq 'x'",
        "id ne 'a'",
        "id in ('a','b')",
        "not(id eq 'a')",
        "displayName eq 'a'",
    ],
)
def test_id_eq_values_is_none_for_anything_else(text):
    assert analyze(parse_filter(text)).id_eq_values is None


# ------------------------------------------------------------------------------------------- building


def test_literal_formats_each_type():
    assert literal("O'Brien") == "'O''Brien'"
    assert literal("") == "''"
    assert literal(True) == "true"
    assert literal(False) == "false"
    assert literal(None) == "null"
    assert literal(42) == "42"
    assert literal(-1.5) == "-1.5"
    assert literal(Decimal("2.50")) == "2.50"
    assert literal(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert literal(datetime(2024, 1, 2, 5, 4, 5, 500, tzinfo=timezone(timedelta(hours=2)))) == (
        "2024-01-02T03:04:05.000500Z"
    )
    assert literal(date(2024, 1, 2)) == "2024-01-02"
    assert literal(uuid.UUID(SKU)) == f"'{SKU}'"


def test_literal_rejects_naive_datetimes_non_finite_numbers_and_other_types():
    with pytest.raises(ValueError):
        literal(datetime(2024, 1, 2))
    with pytest.raises(ValueError):
        literal(float("nan"))
    with pytest.raises(TypeError):
        literal(["a"])


def test_eq_and_any_of_build_filter_text():
    assert eq("userPrincipalName", "o'brien@x.com") == "userPrincipalName eq 'o''brien@x.com'"
    assert eq("accountEnabled", True) == "accountEnabled eq true"
    assert eq("manager", None) == "manager eq null"
    assert any_of("department", ["Sales", "R&D's"]) == "department in ('Sales','R&D''s')"


def test_builders_reject_bad_property_paths_and_empty_lists():
    with pytest.raises(ValueError):
        eq("displayName eq 'x' or id", "y")
    with pytest.raises(ValueError):
        any_of("department", [])


NASTY_VALUES = ["O'Brien", "a''b", "Zoë Ångström", "'); drop", "'", "a' or id ne '", "x eq 'y'", " "]


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_eq_round_trips_nasty_values(value):
    node = parse_filter(eq("displayName", value))
    assert node == Compare("eq", Path(("displayName",)), value)
    assert evaluate(node, {"displayName": value})
    assert not evaluate(node, {"displayName": value + "x"})
    assert not evaluate(node, {"displayName": "x" + value})
    assert not evaluate(node, {})


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_any_of_round_trips_nasty_values(value):
    predicate = compile_filter(any_of("displayName", [value, "other"]))
    assert predicate({"displayName": value})
    assert not predicate({"displayName": "x" + value})


def test_round_trip_near_misses_do_not_match():
    node = parse_filter(eq("surname", "O'Brien"))
    assert not evaluate(node, {"surname": "OBrien"})
    assert not evaluate(node, {"surname": "O''Brien"})
    assert not evaluate(node, {"surname": "O Brien"})
    assert evaluate(node, {"surname": "o'brien"})  # directory matching ignores case


def test_round_trip_of_non_string_values():
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert evaluate(parse_filter(eq("createdDateTime", when)), {"createdDateTime": "2024-01-02T03:04:05Z"})
    assert evaluate(parse_filter(eq("accountEnabled", False)), {"accountEnabled": False})
    assert evaluate(parse_filter(eq("n", 3)), {"n": 3})
    assert evaluate(parse_filter(eq("id", uuid.UUID(SKU))), {"id": SKU})


# --------------------------------------------------------------------------------------------- search


def test_search_parses_clauses_with_and_binding_tighter_than_or():
    node = parse_search('"displayName:foo" AND "mail:bar" OR "surname:baz"')
    assert node == SearchOr(
        (
            SearchAnd((SearchTerm("displayName", "foo"), SearchTerm("mail", "bar"))),
            SearchTerm("surname", "baz"),
        )
    )
    assert parse_search('"displayName:a" AND ("mail:b" OR "mail:c")') == SearchAnd(
        (SearchTerm("displayName", "a"), SearchOr((SearchTerm("mail", "b"), SearchTerm("mail", "c"))))
    )


def test_search_term_keeps_colons_after_the_first_and_escaped_quotes():
    assert parse_search('"proxyAddresses:smtp:a@x.com"') == SearchTerm("proxyAddresses", "smtp:a@x.com")
    assert parse_search(r'"displayName:say \"hi\""') == SearchTerm("displayName", 'say "hi"')


@pytest.mark.parametrize(
    "text",
    [
        "",
        "displayName:foo",
        '"foo"',
        '"displayName:"',
        '"displayName:a" "mail:b"',
        '("displayName:a"',
        '"a:b" AND',
    ],
)
def test_malformed_search_is_rejected(text):
    with pytest.raises(FilterError):
        parse_search(text)


def test_search_matches_word_prefixes_case_insensitively():
    user = {"displayName": "Adele Vance-Smith", "mail": "adele.vance@contoso.com", "jobTitle": None}
    assert evaluate_search(parse_search('"displayName:ade"'), user)
    assert evaluate_search(parse_search('"displayName:VAN"'), user)
    assert evaluate_search(parse_search('"displayName:smi"'), user)
    assert not evaluate_search(parse_search('"displayName:dele"'), user)
    assert evaluate_search(parse_search('"mail:contoso"'), user)
    assert not evaluate_search(parse_search('"jobTitle:a"'), user)
    assert not evaluate_search(parse_search('"surname:a"'), user)


def test_search_on_mail_and_upn_also_matches_whole_value_prefix():
    user = {
        "mail": "adele.vance@contoso.com",
        "userPrincipalName": "AdeleV@contoso.com",
        "displayName": "a.b",
    }
    assert evaluate_search(parse_search('"mail:adele.vance@con"'), user)
    assert evaluate_search(parse_search('"userPrincipalName:adelev@"'), user)
    assert evaluate_search(parse_search('"mail:vance@contoso"'), user)  # each term word starts a value word
    assert not evaluate_search(parse_search('"userPrincipalName:contoso.org"'), user)
    assert not evaluate_search(parse_search('"displayName:adele.vance"'), {"displayName": "Adele Smith"})


def test_search_combines_clauses():
    user = {"displayName": "Adele Vance", "mail": "adele@contoso.com"}
    assert evaluate_search(parse_search('"displayName:adele" AND "mail:adele"'), user)
    assert not evaluate_search(parse_search('"displayName:adele" AND "mail:bob"'), user)
    assert evaluate_search(parse_search('"displayName:bob" OR "mail:adele"'), user)


def test_search_on_collection_matches_any_element():
    group = {"proxyAddresses": ["SMTP:sales@contoso.com", "smtp:ventes@contoso.fr"]}
    assert evaluate_search(parse_search('"proxyAddresses:ventes"'), group)


def test_search_properties_lists_searched_properties():
    node = parse_search('"displayName:a" OR ("mail:b" AND "displayName:c")')
    assert search_properties(node) == {"displayName", "mail"}
