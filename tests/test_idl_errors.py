"""IDL loading and checking: every mistake gets one line, `FILE:LINE: what is wrong`, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.load import IdlErrors, LoadedInterface, load_interfaces
from codegen.reserved import RESERVED_MEMBER_NAMES, RESERVED_MODEL_FIELD_NAMES
from runtime.schema import REQUIRED, FieldSpec

REPO = Path(__file__).resolve().parent.parent
HEAD = "interface: Dev\nversion: 1\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch folder that is also the current directory, so paths are given relative."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text, encoding="utf-8")
    return Path(name) if folder == Path.cwd() else folder / name


def errors_of(*paths: Path) -> list[str]:
    with pytest.raises(IdlErrors) as caught:
        load_interfaces(list(paths))
    assert str(caught.value) == "\n".join(str(error) for error in caught.value.errors)
    return [str(error) for error in caught.value.errors]


def load_one(folder: Path, text: str) -> LoadedInterface:
    (loaded,) = load_interfaces([write(folder, "dev.yaml", text)])
    return loaded


QUOTE = 'e.g. {type: "tuple[int, int]"}'

# One mistake each: the IDL text after `interface: Dev` and `version: 1`, and the whole report.
MISTAKES = {
    "bad_yaml": (
        "doc: a: b\n",
        ["dev.yaml:3: invalid YAML: a ':' where a value was expected; quote a value that contains ': '"],
    ),
    "key_given_twice": (
        "doc: x\ndoc: y\n",
        ["dev.yaml:4: key 'doc' is given twice; the first is on line 3"],
    ),
    "unquoted_type_in_flow_mapping": (
        "properties:\n  pos: {type: tuple[int, int]}\n",
        [f"dev.yaml:4: invalid YAML: inside {{...}}, quote a type that has brackets, {QUOTE}"],
    ),
    "tab_indent": (
        "enums:\n\tMode: [a]\n",
        ["dev.yaml:4: invalid YAML: a tab character; indent YAML with spaces"],
    ),
    "binary_tag": (
        "doc: !!binary aGk=\n",
        ["dev.yaml:3: tag !!binary is not supported; an IDL holds only strings, numbers, booleans and null"],
    ),
    "unknown_key_with_suggestion": (
        "properties:\n  mode: {type: int, writeable: true}\n",
        ["dev.yaml:4: unknown key 'writeable' in property 'mode'; did you mean 'writable'?"],
    ),
    "unknown_key_at_top_level": (
        "singals: {}\n",
        ["dev.yaml:3: unknown key 'singals' in the file; did you mean 'signals'?"],
    ),
    "version_not_an_integer": (
        None,
        ["dev.yaml:2: 'version' must be an integer, not the string 'one'"],
    ),
    "declaration_not_a_mapping": (
        "structs:\n  S: [int]\n",
        ["dev.yaml:4: struct 'S' must be a mapping, not a list"],
    ),
    "field_without_type": (
        "structs:\n  S:\n    fields:\n      x: {doc: what}\n",
        ["dev.yaml:6: field 'x' of struct 'S' has no 'type'; add one, e.g. 'type: int'"],
    ),
    "type_given_as_list": (
        "structs:\n  S:\n    fields:\n      a: {type: [int, int]}\n",
        [
            "dev.yaml:6: 'type' of field 'a' of struct 'S' must be a string, not a list; "
            f"quote a type that has brackets, {QUOTE}"
        ],
    ),
    "returns_with_type_and_fields": (
        "methods:\n  go:\n    returns: {type: int, fields: {a: int}}\n",
        ["dev.yaml:5: the return of method 'go': give either 'type' or 'fields', not both"],
    ),
    "name_not_an_identifier": (
        "structs:\n  My-Struct:\n    fields: {x: int}\n",
        ["dev.yaml:4: struct 'My-Struct' is not a valid name; use letters, digits and '_', not starting with a digit"],
    ),
    "python_keyword": (
        "methods:\n  class: {}\n",
        ["dev.yaml:4: method 'class' is a Python keyword; choose another name"],
    ),
    "declared_twice": (
        "enums:\n  Mode: [a, b]\nstructs:\n  Mode:\n    fields: {x: int}\n",
        ["dev.yaml:6: struct 'Mode' is declared twice: it is also enum 'Mode' on line 4; rename one"],
    ),
    "struct_named_like_a_result_model": (
        "structs:\n  GetXResult:\n    fields: {x: int}\nmethods:\n  get_x:\n    returns: {fields: {x: int}}\n",
        ["dev.yaml:4: struct 'GetXResult' has the name of the result model of method 'get_x'; rename it"],
    ),
    "error_named_like_the_client": (
        "errors:\n  DevClient: {}\n",
        ["dev.yaml:4: error 'DevClient' has the name of the client class of interface 'Dev'; rename it"],
    ),
    "struct_named_like_a_generated_import": (
        "structs:\n  Field:\n    fields: {x: int}\n",
        ["dev.yaml:4: struct 'Field' would shadow 'Field', which generated code uses; rename it"],
    ),
    "method_named_like_a_property_setter": (
        "properties:\n  mode: {type: int, default: 0, writable: true}\nmethods:\n  set_mode: {args: {value: int}}\n",
        [
            "dev.yaml:6: method 'set_mode' has the same name as the server's 'set_mode' hook "
            "of writable property 'mode'; rename one"
        ],
    ),
    "property_and_method_with_one_name": (
        "properties:\n  mode: {type: int, default: 0}\nmethods:\n  mode: {}\n",
        ["dev.yaml:6: method 'mode' has the same name as property 'mode' on line 4; rename one"],
    ),
    "struct_field_shadows_base_model": (
        "structs:\n  S:\n    fields:\n      copy: int\n      model_dump: str\n",
        [
            "dev.yaml:6: field 'copy' of struct 'S' would shadow pydantic BaseModel's own 'copy'; rename it",
            "dev.yaml:7: field 'model_dump' of struct 'S' would shadow pydantic BaseModel's own 'model_dump'; "
            "rename it",
        ],
    ),
    "member_shadows_runtime_base": (
        "methods:\n  connect: {}\n  _hidden: {}\nsignals:\n  stop: {}\n",
        [
            "dev.yaml:4: method 'connect' would shadow the client's or server's own 'connect'; rename it",
            "dev.yaml:5: method '_hidden' starts with '_', which the runtime keeps for itself; rename it",
            "dev.yaml:7: signal 'stop' would shadow the client's or server's own 'stop'; rename it",
        ],
    ),
    "error_field_shadows_remote_error": (
        "errors:\n  Busy:\n    fields: {message: str}\n",
        ["dev.yaml:5: field 'message' of error 'Busy' would shadow runtime.RemoteError's own 'message'; rename it"],
    ),
    "argument_named_timeout": (
        "methods:\n  go: {args: {timeout: float}}\n",
        ["dev.yaml:4: argument 'timeout' of method 'go' is a name the generated method uses itself; rename it"],
    ),
    "bad_enum_values": (
        "enums:\n  E:\n    - ok\n    - class\n    - _x\n    - name\n    - 1a\n    - ok\n",
        [
            "dev.yaml:6: value 'class' of enum 'E' is a Python keyword; choose another name",
            "dev.yaml:7: value '_x' of enum 'E' starts with '_', which enum keeps for itself; rename it",
            "dev.yaml:8: value 'name' of enum 'E' would shadow the enum member's own '.name'; rename it",
            "dev.yaml:9: value '1a' of enum 'E' is not a valid name; "
            "use letters, digits and '_', not starting with a digit",
            "dev.yaml:10: value 'ok' of enum 'E' is given twice",
        ],
    ),
    "unknown_type_with_suggestion": (
        "enums:\n  Mode: [a]\nstructs:\n  S:\n    fields:\n      a: Mdoe\n      b: 'list[Nope]'\n      c: Int\n",
        [
            "dev.yaml:8: unknown type 'Mdoe' in field 'a' of struct 'S'; did you mean 'Mode'?",
            "dev.yaml:9: unknown type 'Nope' in field 'b' of struct 'S'; "
            "declare it under 'enums' or 'structs', or import the file that does",
            "dev.yaml:10: unknown type 'Int' in field 'c' of struct 'S'; did you mean 'int'?",
        ],
    ),
    "error_used_as_a_type": (
        "errors:\n  Busy: {}\nstructs:\n  S:\n    fields: {b: Busy}\n",
        ["dev.yaml:7: field 'b' of struct 'S' has type 'Busy', an error; only enums and structs are types"],
    ),
    "malformed_type": (
        "structs:\n  S:\n    fields:\n      a: list[int\n      b: int | str\n",
        [
            "dev.yaml:6: field 'a' of struct 'S' has a malformed type: type 'list[int' ends too early; "
            f"inside {{...}}, quote a type that has brackets, {QUOTE}",
            "dev.yaml:7: field 'b' of struct 'S' has a malformed type: "
            "only 'T | None' unions are supported, not 'int | str'",
        ],
    ),
    "dict_with_non_str_keys": (
        "properties:\n  table:\n    type: dict[int, str]\n    default: {}\n",
        ["dev.yaml:5: property 'table' has a malformed type: dict keys must be str, not int, in type 'dict[int, str]'"],
    ),
    "default_outside_constraints": (
        "properties:\n  rot: {type: int, default: 300, le: 270}\n  count: {type: int, default: '3'}\n",
        [
            "dev.yaml:4: default 300 of property 'rot' does not fit type int: "
            "input should be less than or equal to 270",
            "dev.yaml:5: default \"3\" of property 'count' does not fit type int: input should be a valid integer",
        ],
    ),
    "default_not_an_enum_value": (
        "enums:\n  Mode: [still, video]\nproperties:\n  mode: {type: Mode, default: stil}\n",
        ["dev.yaml:6: default \"stil\" of property 'mode' does not fit type Mode: input should be 'still' or 'video'"],
    ),
    "default_struct_missing_a_field": (
        "structs:\n  P:\n    fields: {x: float, y: float}\nmethods:\n  go:\n    args:\n"
        "      at: {type: P, default: {x: 1}}\n",
        ["dev.yaml:9: default {\"x\": 1} of argument 'at' of method 'go' does not fit type P: field required (at y)"],
    ),
    "constraint_that_does_not_apply": (
        "properties:\n  label: {type: str, ge: 0}\n  n: {type: int | None, pattern: x}\n"
        "  fine: {type: int | None, ge: 0, default: null}\n",
        [
            "dev.yaml:4: constraint 'ge' does not apply to type str of property 'label'; 'ge' is for int and float",
            "dev.yaml:5: constraint 'pattern' does not apply to type int | None of property 'n'; 'pattern' is for str",
        ],
    ),
    "contradictory_constraints": (
        "properties:\n  n: {type: int, default: 3, ge: 5, le: 1}\n  x: {type: float, default: 1.0, gt: 2.0, lt: 2.0}\n"
        "  y: {type: float, default: 2.0, ge: 2.0, le: 2.0}\n  z: {type: float, default: 0.0, gt: 1.0, le: 1.0}\n"
        "  label: {type: str, default: ab, min_length: 3, max_length: 2}\n",
        [
            "dev.yaml:4: constraints of property 'n' contradict each other: 'ge' 5 is above 'le' 1, so no value fits",
            "dev.yaml:5: constraints of property 'x' contradict each other: "
            "'gt' 2.0 is at or above 'lt' 2.0, so no value fits",
            "dev.yaml:7: constraints of property 'z' contradict each other: "
            "'gt' 1.0 is at or above 'le' 1.0, so no value fits",
            "dev.yaml:8: constraints of property 'label' contradict each other: "
            "'min_length' 3 is above 'max_length' 2, so no value fits",
        ],
    ),
    "notify_names_no_signal": (
        "properties:\n  mode: {type: int, default: 0, notify: modeChange}\n"
        "signals:\n  modeChanged: {args: {mode: int}}\n",
        ["dev.yaml:4: 'notify' of property 'mode' names no declared signal 'modeChange'; did you mean 'modeChanged'?"],
    ),
    "notify_signal_that_does_not_fit": (
        "properties:\n  mode: {type: int, default: 0, notify: modeChanged}\n"
        "signals:\n  modeChanged: {args: {mode: str}}\n",
        [
            "dev.yaml:6: signal 'modeChanged' notifies property 'mode', so it takes one argument of type int, "
            "e.g. args: {mode: int}"
        ],
    ),
    "raises_an_undeclared_error": (
        "errors:\n  Busy: {}\nmethods:\n  go: {raises: [Bussy]}\n",
        ["dev.yaml:6: 'raises' of method 'go' names no declared error 'Bussy'; did you mean 'Busy'?"],
    ),
    "oneway_with_returns": (
        "methods:\n  go: {oneway: true, returns: int}\n",
        ["dev.yaml:4: method 'go' is oneway, so nobody waits for what it returns; remove 'returns' or 'oneway'"],
    ),
    "stream_that_is_oneway": (
        "methods:\n  go: {yields: int, oneway: true}\n",
        [
            "dev.yaml:4: method 'go' yields items, so its caller reads them and it cannot be oneway; "
            "remove 'oneway' or 'yields'"
        ],
    ),
    "latest_without_yields": (
        "methods:\n  go:\n    returns: int\n    latest: true\n",
        [
            "dev.yaml:6: 'latest' of method 'go' is for a stream: add 'yields' with the type of its items, "
            "or remove 'latest'"
        ],
    ),
    "yields_an_unknown_type": (
        "methods:\n  go:\n    yields: {type: Frame, doc: One frame.}\n",
        [
            "dev.yaml:5: unknown type 'Frame' in the items of method 'go'; "
            "declare it under 'enums' or 'structs', or import the file that does"
        ],
    ),
    "yields_with_a_default": (
        "methods:\n  go:\n    yields: {type: int, default: 1}\n",
        [
            "dev.yaml:5: unknown key 'default' in the items of method 'go'; expected one of doc, ge, gt, le, lt, "
            "max_length, min_length, multiple_of, pattern, type"
        ],
    ),
    "timeout_not_positive": (
        "methods:\n  go: {timeout: 0}\n",
        ["dev.yaml:4: 'timeout' of method 'go' must be a positive number of seconds, or null to wait for ever"],
    ),
    "timeout_not_a_number": (
        "methods:\n  go: {timeout: fast}\n",
        ["dev.yaml:4: 'timeout' of method 'go' must be a number, not the string 'fast'"],
    ),
    "structs_that_contain_each_other": (
        "structs:\n  A:\n    fields: {b: B}\n  B:\n    fields: {a: 'tuple[A, int]'}\n"
        "  Tree:\n    fields: {parent: Tree | None, children: 'list[Tree]', index: 'dict[str, Tree]'}\n",
        [
            "dev.yaml:5: struct 'A' contains itself (A.b -> B.a -> A), so no value could be built; "
            "make one of these fields optional ('T | None') or a list"
        ],
    ),
}


@pytest.mark.parametrize("body, expected", list(MISTAKES.values()), ids=list(MISTAKES))
def test_each_mistake_is_reported_with_its_line(workdir: Path, body: str | None, expected: list[str]) -> None:
    text = HEAD + body if body is not None else "interface: Dev\nversion: one\n"
    assert errors_of(write(workdir, "dev.yaml", text)) == expected


def test_missing_interface_and_version_are_both_reported(workdir: Path) -> None:
    assert errors_of(write(workdir, "dev.yaml", "doc: nothing else\n")) == [
        "dev.yaml:1: the file has no 'interface'; name the interface, e.g. 'interface: Camera'",
        "dev.yaml:1: the file has no 'version'; give its integer major version, e.g. 'version: 1'",
    ]


def test_empty_file_is_reported(workdir: Path) -> None:
    assert errors_of(write(workdir, "dev.yaml", "")) == [
        "dev.yaml:1: the file is empty; an IDL file starts with 'interface:' and 'version:'"
    ]


def test_file_name_must_name_a_module(workdir: Path) -> None:
    assert errors_of(write(workdir, "my-dev.yaml", HEAD)) == [
        "my-dev.yaml: 'my-dev' cannot name a Python module; rename the file, e.g. to my_device.yaml"
    ]


def test_every_mistake_of_a_file_is_reported_at_once(workdir: Path) -> None:
    text = HEAD + (
        "properties:\n"
        "  mode: {type: Mode, default: 0, notify: changed}\n"
        "  stop: {type: int, default: 0}\n"
        "methods:\n"
        "  go: {raises: [Busy], oneway: true, returns: int}\n"
    )
    assert errors_of(write(workdir, "dev.yaml", text)) == [
        "dev.yaml:4: 'notify' of property 'mode' names no declared signal 'changed'; declare it under 'signals'",
        "dev.yaml:4: unknown type 'Mode' in property 'mode'; "
        "declare it under 'enums' or 'structs', or import the file that does",
        "dev.yaml:5: property 'stop' would shadow the client's or server's own 'stop'; rename it",
        "dev.yaml:7: 'raises' of method 'go' names no declared error 'Busy'; declare it under 'errors'",
        "dev.yaml:7: method 'go' is oneway, so nobody waits for what it returns; remove 'returns' or 'oneway'",
    ]


def test_mistakes_of_several_files_are_reported_together_sorted(workdir: Path) -> None:
    write(workdir, "b.yaml", HEAD + "methods:\n  go: {timeout: -1}\n")
    write(workdir, "a.yaml", HEAD + "doc: [\n")
    assert errors_of(Path(".")) == [
        "a.yaml:4: invalid YAML: the file ends inside a bracket; close it",
        "b.yaml:4: 'timeout' of method 'go' must be a positive number of seconds, or null to wait for ever",
    ]


def test_yaml_core_schema_keeps_on_and_off_as_strings(workdir: Path) -> None:
    loaded = load_one(
        workdir,
        HEAD + "enums:\n  Power: [on, off, yes, no]\nproperties:\n"
        "  gain: {type: float, default: 1e3}\n  stamp: {type: str, default: 2024-01-01}\n",
    )
    assert loaded.interface.enums[0].values == ("on", "off", "yes", "no")
    gain, stamp = loaded.interface.properties
    assert gain.default == 1000.0
    assert stamp.default == "2024-01-01"


def test_nan_and_infinities_are_refused_as_defaults_and_bounds_since_json_cannot_carry_them(workdir: Path) -> None:
    path = write(
        workdir,
        "dev.yaml",
        HEAD + "properties:\n"
        "  gain: {type: float, default: .inf}\n"
        "  anything: {type: any, default: [1, .nan]}\n"
        "  level: {type: float, default: 0.0, le: .inf}\n",
    )
    assert errors_of(path) == [
        "dev.yaml:4: default Infinity of property 'gain' does not fit type float: it holds NaN or an infinity, "
        "which JSON (the wire, the handshake) has no way to write",
        "dev.yaml:5: default [1, NaN] of property 'anything' does not fit type any: it holds NaN or an infinity, "
        "which JSON (the wire, the handshake) has no way to write",
        "dev.yaml:6: 'le' of property 'level' must be a finite number, not inf",
    ]


def test_short_forms_and_defaults_describe_the_interface(workdir: Path) -> None:
    loaded = load_one(
        workdir,
        HEAD
        + "enums:\n  Mode:\n    doc: What it does.\n    values: [a, b]\n"
        + "methods:\n"
        + "  ping:\n"
        + "  measure:\n    args: {n: {type: int, ge: 1, default: 3}, mode: Mode}\n"
        + "    returns: {type: 'list[ float ]', doc: One value a sample.}\n    timeout: null\n",
    )
    ping, measure = loaded.interface.methods
    assert ping.args == () and ping.returns is None and ping.timeout == 10.0
    assert measure.args == (
        FieldSpec("n", "int", default=3, constraints={"ge": 1}),
        FieldSpec("mode", "Mode", default=REQUIRED),
    )
    assert measure.returns == FieldSpec("return", "list[float]", doc="One value a sample.")
    assert measure.timeout is None
    assert loaded.interface.enums[0].doc == "What it does."


def test_bundled_idl_files_load() -> None:
    loaded = {item.module: item for item in load_interfaces([REPO / "idl"])}
    assert sorted(loaded) == ["camera", "cnc", "controller"]
    camera = loaded["camera"].interface
    assert camera.name == "Camera" and camera.version == 1
    assert [enum.name for enum in camera.enums] == ["CameraMode", "Encoding"]
    mode = camera.find_property("mode")
    assert mode is not None and (mode.type, mode.default, mode.writable, mode.notify) == (
        "CameraMode",
        "still",
        True,
        "modeChanged",
    )
    get_image = camera.find_method("get_image")
    assert get_image is not None
    assert [field.name for field in get_image.result] == ["image", "info"]
    assert get_image.raises == ("CameraBusy",) and get_image.result_name == "GetImageResult"
    capture = camera.find_method("capture_array")
    assert capture is not None and capture.returns == FieldSpec("return", "ndarray")
    moveto = loaded["cnc"].interface.find_method("moveto")
    assert moveto is not None and moveto.timeout == 60.0
    assert moveto.args[2] == FieldSpec("z", "float", default=0.0, constraints={"ge": 0.0, "le": 100.0})
    run_scan = loaded["controller"].interface.find_method("run_scan")
    assert run_scan is not None and run_scan.timeout == 60.0 and run_scan.stream
    assert run_scan.yields == FieldSpec("item", "ScanProgress")


def test_imports_are_loaded_and_their_types_usable(workdir: Path) -> None:
    write(workdir, "common.yaml", "interface: Common\nversion: 1\nenums:\n  Unit: [mm, deg]\n")
    write(workdir, "dev.yaml", HEAD + "imports: [common]\nproperties:\n  unit: {type: Unit, default: mm}\n")
    loaded = {item.module: item for item in load_interfaces([Path("dev.yaml")])}
    assert sorted(loaded) == ["common", "dev"]
    dev = loaded["dev"]
    assert dev.imports == ("common",)
    assert dev.interface.imports == (loaded["common"].interface,)
    assert [enum.name for enum in dev.interface.all_enums()] == ["Unit"]


def test_declaring_an_imported_name_again_is_reported(workdir: Path) -> None:
    write(workdir, "common.yaml", "interface: Common\nversion: 1\nenums:\n  Unit: [mm, deg]\n")
    write(workdir, "dev.yaml", HEAD + "imports: [common]\nenums:\n  Unit: [m]\n")
    assert errors_of(Path(".")) == [
        "dev.yaml:5: enum 'Unit' is declared twice: it is also enum 'Unit' of common.yaml:4; rename one"
    ]


def test_missing_import_is_reported(workdir: Path) -> None:
    write(workdir, "common.yaml", "interface: Common\nversion: 1\n")
    write(workdir, "dev.yaml", HEAD + "imports:\n  - commn\n")
    assert errors_of(Path("dev.yaml")) == [
        "dev.yaml:4: import 'commn' not found: there is no commn.yaml next to dev.yaml; did you mean 'common'?"
    ]


def test_import_cycle_is_reported(workdir: Path) -> None:
    write(workdir, "a.yaml", "interface: A\nversion: 1\nimports: [b]\n")
    write(workdir, "b.yaml", "interface: B\nversion: 1\nimports: [a]\n")
    assert errors_of(Path(".")) == [
        "b.yaml:3: import cycle a -> b -> a; move what they share into a file that both import"
    ]


def test_reserved_names_cover_runtime_and_pydantic_attributes() -> None:
    assert {"connect", "close", "lookup", "serve", "running", "get", "set", "emit"} <= RESERVED_MEMBER_NAMES
    assert {"model_config", "model_dump", "copy", "dict", "json", "schema", "validate", "fields"} <= (
        RESERVED_MODEL_FIELD_NAMES
    )
