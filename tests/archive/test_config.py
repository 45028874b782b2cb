"""usarchive.toml: loading, sources, validation; init and refusing a missing archive; CLI conventions."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ingest_helpers import us_dataset, write_instance
from pydicom import dcmread

from archive.archive import Archive
from archive.cli.main import main
from archive.config import ENV_CONFIG, ENV_DEID_SECRET, ENV_REVIEWER, KEYS, load_configuration
from archive.errors import AnnotationError, ArchiveNotFoundError, ConfigError
from archive.forward.config import FORWARD_KEYS
from archive.index.engine import create_index_engine
from archive.ingest import DuplicatePolicy, Origin
from archive.model import ReviewStatus
from archive.phantom.to_annotation import annotation_from_truth
from archive.phantom.truth import GroundTruth
from archive.research.deid import DeidOptions
from archive.research.deid.apply import deidentify_dataset
from archive.settings import ENV_DB, ENV_HOME, ArchiveSettings

SECRET_HEX = "00112233445566778899aabbccddeeff0011"


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    base = {ENV_HOME: "", ENV_DB: "", ENV_CONFIG: "", ENV_REVIEWER: "", ENV_DEID_SECRET: ""}
    return CliRunner().invoke(main, list(args), env={**base, **(env or {})})


def init(data_dir: Path) -> None:
    result = cli("--data-dir", str(data_dir), "init")
    assert result.exit_code == 0, result.output


# -- loading ---------------------------------------------------------------------------------------


def test_file_then_environment_then_flags_each_value_with_its_source(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    (tmp_path / "rules.toml").write_text('extends = "default"\n', encoding="utf-8")
    config.write_text(
        "# a site\n[archive]\n"
        f'data_dir = "{tmp_path / "from-file"}"\nrules = "rules.toml"\nduplicate_policy = "replace"\n'
        'rule_modalities = ["us"]\n\n[review]\nreviewer = "file-reviewer"\nfour_eyes = true\n'
        '\n[server]\nallow = ["SCANNER"]\n',
        encoding="utf-8",
    )
    loaded = load_configuration(config_path=config, environ={})
    settings = loaded.archive
    assert settings.data_dir == tmp_path / "from-file"
    assert settings.rules_path == tmp_path / "rules.toml"  # relative to the file
    assert settings.duplicate_policy is DuplicatePolicy.REPLACE
    assert settings.rule_modalities == ("US",)
    assert (settings.reviewer, settings.four_eyes) == ("file-reviewer", True)
    assert loaded.sources["archive.data_dir"] == f"{config}:3"
    assert loaded.sources["review.four_eyes"] == f"{config}:10"
    assert loaded.sources["archive.db"] == "default"
    assert dict(loaded.tables["server"]) == {"allow": ["SCANNER"]}

    env = {ENV_HOME: str(tmp_path / "from-env"), ENV_REVIEWER: "env-reviewer", ENV_CONFIG: str(config)}
    by_env = load_configuration(environ=env)
    assert by_env.archive.data_dir == tmp_path / "from-env"
    assert by_env.sources["archive.data_dir"] == f"env {ENV_HOME}"
    assert (by_env.archive.reviewer, by_env.sources["review.reviewer"]) == (
        "env-reviewer",
        f"env {ENV_REVIEWER}",
    )

    by_flag = load_configuration(data_dir=tmp_path / "from-flag", db_url="sqlite:///x.db", environ=env)
    assert by_flag.archive.data_dir == tmp_path / "from-flag"
    assert (by_flag.sources["archive.data_dir"], by_flag.sources["archive.db"]) == ("--data-dir", "--db")


def test_the_file_in_the_data_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "usarchive.toml").write_text('[archive]\nduplicate_policy = "replace"\n', encoding="utf-8")
    loaded = load_configuration(data_dir=tmp_path, environ={})
    assert loaded.path == tmp_path / "usarchive.toml"
    assert loaded.archive.duplicate_policy is DuplicatePolicy.REPLACE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[archive]\n\nduplicate_policy = "sometimes"\n',
            ":3: [archive] duplicate_policy: expected 'keep-first'",
        ),
        ("[review]\nfour_eyes = 1\n", ":2: [review] four_eyes: expected true or false, but got 1"),
        ('[archive]\nrule_modalities = "US"\n', ":2: [archive] rule_modalities: expected a list"),
        ('[archive]\ndatadir = "x"\n', ":2: [archive] datadir: unknown key; expected some of"),
        ("[log]\nmax_bytes = 0\n", ":2: [log] max_bytes: expected a whole number of at least 1"),
        ("[archive]\n[forwarding]\n", ":2: [forwarding]: unknown section"),
        ("[worklist]\nmax_results = 0\n", ":2: [worklist] max_results: expected a whole number of at least"),
        ("[archive\n", "expected valid TOML"),
    ],
)
def test_invalid_values_name_the_key_the_file_and_the_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "usarchive.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_configuration(config_path=config, environ={})
    assert str(config) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_config_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_configuration(config_path=tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match=ENV_CONFIG):
        load_configuration(environ={ENV_CONFIG: str(tmp_path / "nope.toml")})


def test_config_show_lists_every_key_with_its_source(tmp_path: Path) -> None:
    init(tmp_path / "data")
    config = tmp_path / "data" / "usarchive.toml"
    config.write_text('[review]\nreviewer = "carol"\n\n[server]\nport = 104\n', encoding="utf-8")
    result = cli("--data-dir", str(tmp_path / "data"), "config", "show", env={ENV_DB: "sqlite:////tmp/i.db"})
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[1]: line.split("\t") for line in result.output.splitlines()[1:]}
    forward = {f"forward.{key.name}" for key in FORWARD_KEYS}  # shown with their defaults
    assert set(rows) == {key.dotted for key in KEYS} | {"server.port"} | forward
    assert rows["archive.data_dir"][0] == "--data-dir"
    assert rows["archive.db"][0] == f"env {ENV_DB}"
    assert rows["review.reviewer"] == [f"{config}:2", "review.reviewer", "carol"]
    assert rows["server.port"] == [f"{config}:5", "server.port", "104"]
    assert rows["review.four_eyes"] == ["default", "review.four_eyes", "true"]
    as_json = json.loads(cli("--data-dir", str(tmp_path / "data"), "config", "show", "--json").output)
    assert as_json["config_file"] == str(config)


def test_config_show_hides_the_secret_and_the_database_password(tmp_path: Path) -> None:
    result = cli(
        "--data-dir",
        str(tmp_path),
        "--db",
        "postgresql://user:hunter2@db/usarchive",
        "config",
        "show",
        env={ENV_DEID_SECRET: SECRET_HEX},
    )
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and SECRET_HEX not in result.output
    assert "postgresql://user:***@db/usarchive" in result.output


# -- one secret decoder ------------------------------------------------------------------------------


def test_the_same_secret_gives_the_same_pseudonyms_through_the_library_and_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init(data)
    secret_file = data / "secret.txt"
    secret_file.write_text(SECRET_HEX + "\n", encoding="utf-8")  # hex digits: decoded as hex, once
    (data / "usarchive.toml").write_text('[deid]\nsecret_file = "secret.txt"\n', encoding="utf-8")
    source = write_instance(tmp_path / "in", us_dataset(patient_id="PSECRET"))
    settings = load_configuration(data_dir=data, environ={}).archive
    assert settings.deid_secret == bytes.fromhex(SECRET_HEX)
    library = deidentify_dataset(dcmread(source), DeidOptions.from_settings(settings, clean_pixels=False))
    with Archive.open(settings, create=False) as archive:
        archive.ingest(source, origin=Origin("file"))
    runs = {
        "config": cli(
            "--data-dir",
            str(data),
            "export",
            "--format",
            "dicom",
            "--status",
            "any",
            "--allow-uncalibrated",
            str(tmp_path / "by-config"),
        ),
        "secret-file": cli(
            "--data-dir",
            str(data),
            "export",
            "--format",
            "dicom",
            "--status",
            "any",
            "--allow-uncalibrated",
            "--secret-file",
            str(secret_file),
            str(tmp_path / "by-file"),
        ),
        "environment": cli(
            "--data-dir",
            str(data),
            "export",
            "--format",
            "dicom",
            "--status",
            "any",
            "--allow-uncalibrated",
            str(tmp_path / "by-env"),
            env={ENV_DEID_SECRET: SECRET_HEX},
        ),
    }
    for name, result in runs.items():
        assert result.exit_code == 0, (name, result.output)
    for out in ("by-config", "by-file", "by-env"):
        (exported,) = (
            p for p in (tmp_path / out).rglob("*") if p.is_file() and p.suffix not in (".md", ".json")
        )
        ds = dcmread(exported)
        assert ds.PatientID == library.dataset.PatientID != "PSECRET"
        assert ds.SOPInstanceUID == library.dataset.SOPInstanceUID


# -- library: settings the archive honours ----------------------------------------------------------


def test_rule_modalities_leave_other_modalities_unclassified(tmp_path: Path) -> None:
    settings = ArchiveSettings(tmp_path / "data", rule_modalities=("us",))
    with Archive.open(settings) as archive:
        us = archive.ingest(
            write_instance(tmp_path, us_dataset(description="L5 MBB left TT")), origin=Origin("file")
        )
        ot = archive.ingest(
            write_instance(tmp_path, us_dataset(description="L5 MBB left TT", Modality="OT")),
            origin=Origin("file"),
        )
        rows = {
            row.sop_instance_uid: row
            for row in archive.index.find(__import__("archive").index.queries.Query())
        }
    assert (rows[str(us.sop_instance_uid)].technique, rows[str(us.sop_instance_uid)].side) == ("TT", "left")
    assert (rows[str(ot.sop_instance_uid)].technique, rows[str(ot.sop_instance_uid)].side) == (
        "unknown",
        None,
    )


def test_four_eyes_refuses_approving_ones_own_annotation(tmp_path: Path, sample_dir: Path) -> None:
    source = sample_dir / "c45_danger_mono.dcm"
    truth = GroundTruth.read(source.with_suffix(".json"))
    with Archive.open(ArchiveSettings(tmp_path / "data", four_eyes=True)) as archive:
        archive.ingest(source, origin=Origin("file"))
        store = archive.annotations
        store.save(annotation_from_truth(truth, reviewer="alice"), base_version=None)
        store.set_status(truth.sop_instance_uid, "alice", ReviewStatus.SUBMITTED, by="alice")
        with pytest.raises(AnnotationError, match="four_eyes"):
            store.set_status(truth.sop_instance_uid, "alice", ReviewStatus.APPROVED, by="alice")
        assert (
            store.set_status(truth.sop_instance_uid, "alice", "approved", by="bob") is ReviewStatus.APPROVED
        )


def test_a_postgresql_url_without_the_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError, match=r"pip install 'usarchive\[postgres\]'"):
        create_index_engine("postgresql://user@localhost/usarchive")


# -- safe setup ----------------------------------------------------------------------------------------

READ_COMMANDS = [
    ["find"],
    ["find", "--patient", "P*"],
    ["show", "1.2.3"],
    ["stats"],
    ["verify"],
    ["audit"],
    ["export", "--format", "hdf5", "OUT/x.h5"],
    ["review", "list"],
    ["review", "history", "1.2.3"],
    ["review", "export-json", "1.2.3", "--reviewer", "a"],
    ["outcome", "show", "1.2.3"],
    ["import", "IN"],
    ["tag", "1.2.3", "--side", "left", "--by", "a"],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_every_command_refuses_a_directory_holding_no_archive(
    tmp_path: Path, args: list[str], as_json: bool
) -> None:
    wrong = tmp_path / "wrong" / "path"
    (tmp_path / "IN").mkdir()
    argv = [a.replace("OUT", str(tmp_path)).replace("IN", str(tmp_path / "IN")) for a in args]
    result = cli(
        "--data-dir", str(wrong), *argv, *(["--json"] if as_json else []), env={ENV_DEID_SECRET: SECRET_HEX}
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = json.loads(result.stderr)["error"] if as_json else result.stderr
    assert f"no archive at {wrong}" in message and f"usarchive init {wrong}" in message
    assert not wrong.exists()  # nothing was created


def test_an_empty_directory_is_no_archive_either(tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFoundError, match="no store/ directory"):
        Archive.open(ArchiveSettings(tmp_path), create=False)


def test_init_then_commands_work_and_say_which_archive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "site archive"
    result = cli("init", str(data))
    assert result.exit_code == 0, result.output
    assert f"new archive at {data}" in result.output
    text = (data / "usarchive.toml").read_text(encoding="utf-8")
    assert text.startswith("# usarchive configuration") and "[review]" in text
    load_configuration(data_dir=data, environ={})  # the commented template loads
    (data / "usarchive.toml").write_text('[review]\nreviewer = "kept"\n', encoding="utf-8")
    again = cli("init", str(data))
    assert "existing archive" in again.output and "(kept)" in again.output
    assert "kept" in (data / "usarchive.toml").read_text(encoding="utf-8")
    stats = json.loads(cli("--data-dir", str(data), "stats", "--json").output)
    assert stats["archive"] == str(data) and stats["instances"] == 0
    with caplog.at_level(logging.INFO, logger="archive.cli"):
        assert cli("--data-dir", str(data), "-v", "find").exit_code == 0
    assert f"opened the archive at {data}" in caplog.text
    table = cli("--data-dir", str(data), "--format", "table", "find")
    assert f"archive: {data}" in table.output  # the table's caption


# -- CLI conventions -----------------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[str]]:
    data = tmp_path / "data"
    init(data)
    uids = []
    with Archive.open(ArchiveSettings(data), create=False) as archive:
        people = (
            ("AB-100", "Muller^Anna", "ACC1"),
            ("ab-200", "Smith^Bob", "ACC2"),
            ("X-300", "Miller^Carl", "ACC3"),
        )
        for patient, name, accession in people:
            result = archive.ingest(
                write_instance(
                    tmp_path / "in",
                    us_dataset(patient_id=patient, patient_name=name, AccessionNumber=accession),
                ),
                origin=Origin("file"),
            )
            uids.append(str(result.sop_instance_uid))
    return data, uids


def test_json_is_accepted_before_and_after_the_subcommand(filled: tuple[Path, list[str]]) -> None:
    data, uids = filled
    before = cli("--data-dir", str(data), "--json", "find")
    after = cli("--data-dir", str(data), "find", "--json")
    nested = cli("--data-dir", str(data), "review", "list", "--json")
    assert before.exit_code == after.exit_code == nested.exit_code == 0, after.output
    assert json.loads(before.output) == json.loads(after.output)
    assert sorted(row["sop_instance_uid"] for row in json.loads(after.output)) == sorted(uids)
    assert json.loads(nested.output) == []
    assert "--json" in cli("find", "--help").output


def test_errors_are_json_under_json(filled: tuple[Path, list[str]]) -> None:
    data, _ = filled
    result = cli("--data-dir", str(data), "show", "9.9.9", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stderr)
    assert error["exit_code"] == 1 and "9.9.9" in error["error"]
    usage = cli("--data-dir", str(data), "find", "--side", "sideways", "--json")
    assert usage.exit_code == 2 and json.loads(usage.stderr)["exit_code"] == 2


def test_tables_are_tab_separated_when_piped(filled: tuple[Path, list[str]]) -> None:
    data, uids = filled
    piped = cli("--data-dir", str(data), "find")  # click's runner is not a terminal
    lines = piped.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["SOP Instance UID", "patient"]
    assert sorted(line.split("\t")[0] for line in lines[1:]) == sorted(uids)
    assert "│" not in piped.stdout and "━" not in piped.stdout
    assert "3 instance(s)" in piped.stderr
    forced = cli("--data-dir", str(data), "--format", "tsv", "review", "list")
    assert forced.stdout.splitlines() == ["SOP Instance UID\treviewer\tstatus\tversion\tupdated (UTC)"]
    study = json.loads(cli("--data-dir", str(data), "show", uids[0], "--json").stdout)["study_instance_uid"]
    entered = cli("--data-dir", str(data), "outcome", "set", study, "--side", "right", "--vas-pre", "7")
    assert entered.exit_code == 0, entered.stderr
    outcome = cli("--data-dir", str(data), "outcome", "show", study).stdout.splitlines()
    assert outcome[0].split("\t")[:2] == ["side", "vas_pre"]
    assert outcome[1].split("\t")[:3] == ["right", "7", "–"]
    assert "│" not in "\n".join(outcome)


UNWRITABLE = {
    "audit --html": ["audit", "--html", "BAD/a.html"],
    "audit --csv": ["audit", "--csv", "BAD/a.csv"],
    "export hdf5": ["export", "--format", "hdf5", "--status", "any", "--allow-uncalibrated", "BAD/x.h5"],
    "export dicom": ["export", "--format", "dicom", "--status", "any", "--allow-uncalibrated", "BAD/out"],
    "export sr": ["export", "--format", "sr", "--status", "any", "BAD/out"],
    "sample samples": ["sample", "samples", "BAD/samples"],
    "sample generate": ["sample", "generate", "BAD/gen", "--count", "1"],
    "init": ["init", "BAD/archive"],
}


CASES = [(args, "under-a-file") for args in UNWRITABLE.values()] + [
    (UNWRITABLE[name], "missing-dir") for name in ("audit --html", "audit --csv", "export hdf5")
]  # directories of a directory output are made; a file output's directory must exist


@pytest.mark.parametrize(("args", "bad"), CASES, ids=[f"{' '.join(a[:2])}-{b}" for a, b in CASES])
def test_an_unwritable_output_is_one_line_not_a_traceback(
    filled: tuple[Path, list[str]], tmp_path: Path, args: list[str], bad: str
) -> None:
    data, _ = filled
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    where = tmp_path / "missing" / "deeper" if bad == "missing-dir" else blocker / "inside"
    argv = [a.replace("BAD", str(where)) for a in args]
    result = cli("--data-dir", str(data), *argv, env={ENV_DEID_SECRET: SECRET_HEX})
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1, result.stderr


def test_find_patient_is_case_insensitive_with_wildcards_and_by_accession(
    tmp_path: Path, db_url: str
) -> None:
    data = tmp_path / "data"
    assert cli("--data-dir", str(data), "--db", db_url, "init").exit_code == 0
    people = (
        ("AB-100", "Muller^Anna", "ACC1"),
        ("ab-200", "Smith^Bob", "ACC2"),
        ("X-300", "Miller^Carl", "ACC3"),
    )
    with Archive.open(ArchiveSettings(data, db_url), create=False) as archive:
        for patient, name, accession in people:
            ds = us_dataset(patient_id=patient, patient_name=name, AccessionNumber=accession)
            archive.ingest(write_instance(tmp_path / "in", ds), origin=Origin("file"))

    def patients(*args: str) -> list[str]:
        result = cli("--data-dir", str(data), "--db", db_url, "find", "--json", *args)
        assert result.exit_code == 0, result.output
        return sorted(row["patient_id"] for row in json.loads(result.output))

    assert patients("--patient", "ab-100") == ["AB-100"]  # exact, any case
    assert patients("--patient", "AB-*") == ["AB-100", "ab-200"]
    assert patients("--patient", "m?ller^*") == ["AB-100", "X-300"]  # by name
    assert patients("--patient", "AB") == []  # no wildcard: not a prefix search
    assert patients("--patient", "100%") == []  # LIKE's own wildcards are literal
    assert patients("--accession", "ACC2") == ["ab-200"]


def test_a_unique_uid_prefix_is_accepted_wherever_a_uid_is(filled: tuple[Path, list[str]]) -> None:
    data, uids = filled
    uid = uids[0]
    prefix = next(uid[:n] for n in range(len(uid)) if sum(u.startswith(uid[:n]) for u in uids) == 1)
    prefix = uid[: max(len(prefix), len(uid) - 6)]  # also unique among the study and series UIDs
    shown = cli("--data-dir", str(data), "show", prefix, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["kind"] == "instance"
    tagged = cli("--data-dir", str(data), "tag", prefix, "--side", "right", "--by", "tess", "--json")
    assert tagged.exit_code == 0, tagged.output
    assert json.loads(tagged.output)["uid"] == uid
    history = cli("--data-dir", str(data), "review", "history", prefix)
    assert "no UID" not in history.output and "unique prefix" not in history.output
    ambiguous = cli("--data-dir", str(data), "show", "1.2", "--json")
    assert ambiguous.exit_code == 1
    assert "several UIDs start with it" in json.loads(ambiguous.stderr)["error"]
    missing = cli("--data-dir", str(data), "show", "9.9.9")
    assert "none starts with it" in missing.stderr


def test_by_defaults_to_the_configured_reviewer(filled: tuple[Path, list[str]]) -> None:
    data, uids = filled
    (data / "usarchive.toml").write_text('[review]\nreviewer = "dr-config"\n', encoding="utf-8")
    tagged = cli("--data-dir", str(data), "tag", uids[0], "--side", "left")
    assert "by dr-config" in tagged.output
    old_name = cli("--data-dir", str(data), "tag", uids[0], "--side", "right", "--user", "dr-old")
    assert "by dr-old" in old_name.output  # the former option name still works


def test_readme_configuration_table_lists_every_key(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for key in KEYS:
        assert f"| `[{key.section}] {key.name}` |" in table, key.dotted


def test_log_file_is_rotated_by_the_configured_size(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init(data)
    log = tmp_path / "logs" / "usarchive.log"
    log.parent.mkdir()
    (data / "usarchive.toml").write_text("[log]\nmax_bytes = 200\nbackup_count = 2\n", encoding="utf-8")
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        for _ in range(6):
            assert cli("--data-dir", str(data), "--log-file", str(log), "-v", "stats").exit_code == 0
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
                handler.close()
    assert "opened the archive at" in log.read_text(encoding="utf-8")
    assert sorted(p.name for p in log.parent.iterdir()) == [
        "usarchive.log",
        "usarchive.log.1",
        "usarchive.log.2",
    ]
    unwritable = cli("--data-dir", str(data), "--log-file", str(tmp_path / "no" / "dir" / "x.log"), "stats")
    assert (
        unwritable.exit_code == 1 and "log file" in unwritable.output and "Traceback" not in unwritable.output
    )
