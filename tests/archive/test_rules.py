"""Tests of archive.rules: the shipped rules on realistic operator text, datasets and rule files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive.errors import ConfigError
from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique
from archive.phantom import generate_cohort
from archive.rules import Classification, classify, classify_text, default_rules, load_rules

LEFT, RIGHT, B = Side.LEFT, Side.RIGHT, Side.BILATERAL
OT, TT, UNK = Technique.OT, Technique.TT, Technique.UNKNOWN
IP, OOP = Approach.IN_PLANE, Approach.OUT_OF_PLANE
MBB = ProcedureType.MEDIAL_BRANCH_BLOCK
RF = ProcedureType.RADIOFREQUENCY
EPI = ProcedureType.EPIDURAL
FACET = ProcedureType.FACET_INJECTION

# text, levels, side, technique (or, for a text naming only the needle approach,
# that approach: the technique is then unknown), procedure type, region
TEXT_CASES: list[tuple[str, str, Side | None, Technique | Approach, ProcedureType | None, str | None]] = [
    ("L4/5 MBB R", "L4 L5", RIGHT, UNK, MBB, "lumbar"),
    ("L4-5", "L4 L5", None, UNK, None, "lumbar"),
    ("L4/L5", "L4 L5", None, UNK, None, "lumbar"),
    ("L45", "L4 L5", None, UNK, None, "lumbar"),
    ("l4-5 mbb r", "L4 L5", RIGHT, UNK, MBB, "lumbar"),
    ("L5 DR", "L5", None, UNK, None, "lumbar"),
    ("L5 DR one-needle", "L5", None, OT, None, "lumbar"),
    ("L3-L5 MBB", "L3 L4 L5", None, UNK, MBB, "lumbar"),
    ("L3-5", "L3 L4 L5", None, UNK, None, "lumbar"),
    ("Rt L3-L5 MBB IP", "L3 L4 L5", RIGHT, IP, MBB, "lumbar"),
    ("bilat L4-5 facet", "L4 L5", B, UNK, FACET, "lumbar"),
    ("Bilateral L4/5 facet injection", "L4 L5", B, UNK, FACET, "lumbar"),
    ("腰椎 L5 右 一针两点 平面内", "L5", RIGHT, OT, None, "lumbar"),
    ("RF L4 L5 LT", "L4 L5", LEFT, UNK, RF, "lumbar"),
    ("C4/5 颈椎 左 平面内", "C4 C5", LEFT, IP, None, "cervical"),
    ("L4-S1", "L4 L5 S1", None, UNK, None, "lumbar"),
    ("L5/S1 epidural", "L5 S1", None, UNK, EPI, "lumbar"),
    ("T12-L1", "T12 L1", None, UNK, None, None),
    ("T12 thoracic", "T12", None, UNK, None, "thoracic"),
    ("right L4 L5 MBB one needle two points", "L4 L5", RIGHT, OT, MBB, "lumbar"),
    ("LEFT L4/5 TWO NEEDLES", "L4 L5", LEFT, TT, None, "lumbar"),
    ("L4/5 R TT", "L4 L5", RIGHT, TT, None, "lumbar"),
    ("L4-5 MBB 2 punctures", "L4 L5", None, TT, MBB, "lumbar"),
    ("L5 DR 1 needle rt", "L5", RIGHT, OT, None, "lumbar"),
    ("L4/5 L OT in-plane", "L4 L5", LEFT, OT, None, "lumbar"),
    ("L4 in-plane L5 OOP", "L4 L5", None, IP, None, "lumbar"),
    ("L5 out of plane", "L5", None, OOP, None, "lumbar"),
    ("MBB one puncture L4/5 rt", "L4 L5", RIGHT, OT, MBB, "lumbar"),
    ("single puncture L3-L5 bilat", "L3 L4 L5", B, OT, None, "lumbar"),
    ("two punctures L4 L5 Lt", "L4 L5", LEFT, TT, None, "lumbar"),
    ("two points via two punctures", "", None, TT, None, None),
    ("腰4/5 两针两点 右侧", "L4 L5", RIGHT, TT, None, "lumbar"),
    ("L4/5 左 平面外", "L4 L5", LEFT, OOP, None, "lumbar"),
    ("双侧 L3-L5 内侧支阻滞", "L3 L4 L5", B, UNK, MBB, "lumbar"),
    ("L5 射频 右", "L5", RIGHT, UNK, RF, "lumbar"),
    ("硬膜外 腰椎", "", None, UNK, EPI, "lumbar"),
    ("关节突 L4/5 左", "L4 L5", LEFT, UNK, FACET, "lumbar"),
    ("颈椎 C5 右 平面内", "C5", RIGHT, IP, None, "cervical"),
    ("Ｌ４／５　ＭＢＢ　Ｒ", "L4 L5", RIGHT, UNK, MBB, "lumbar"),  # full-width input
    ("L4/5 R and L", "L4 L5", B, UNK, None, "lumbar"),
    ("medial branch block, right L3, L4, L5", "L3 L4 L5", RIGHT, UNK, MBB, "lumbar"),
    ("radiofrequency ablation L4-5 left", "L4 L5", LEFT, UNK, RF, "lumbar"),
    ("C5/6 right IP", "C5 C6", RIGHT, IP, None, "cervical"),
    ("MBB L4/5 B/L OOP", "L4 L5", B, OOP, MBB, "lumbar"),
    # strings that must not match
    ("DR", "", None, UNK, None, None),
    ("RF", "", None, UNK, RF, None),
    ("Liver", "", None, UNK, None, None),
    ("Abdomen C5-2", "", None, UNK, None, None),  # a curvilinear transducer, not C2-C5
    ("Protocol L12-5 MSK", "", None, UNK, None, None),  # a linear transducer
    ("NOT TESTED, SHIP IT", "", None, UNK, None, None),
    ("DRAFT", "", None, UNK, None, None),
    ("", "", None, UNK, None, None),
]


#: Texts that name a technique and a needle approach: their approach.
BOTH_AXES: dict[str, Approach] = {"L4/5 L OT in-plane": IP, "腰椎 L5 右 一针两点 平面内": IP}


def _levels(text: str) -> tuple[SpinalLevel, ...]:
    return tuple(SpinalLevel(part) for part in text.split())


@pytest.mark.parametrize(("text", "levels", "side", "technique", "procedure", "region"), TEXT_CASES)
def test_classify_text_reads_operator_text(
    text: str,
    levels: str,
    side: Side | None,
    technique: Technique | Approach,
    procedure: ProcedureType | None,
    region: str | None,
) -> None:
    result = classify_text(text)
    assert result.levels == _levels(levels)
    assert result.side is side
    if isinstance(technique, Approach):
        assert (result.technique, result.approach) == (UNK, technique)
    else:
        assert result.technique is technique
        assert result.approach is BOTH_AXES.get(text, Approach.UNKNOWN)
    assert result.procedure_type is procedure
    assert result.region == region


def test_table_is_large_enough() -> None:
    assert len(TEXT_CASES) >= 40


def test_technique_and_approach_are_read_apart_within_one_text() -> None:
    both = classify_text("L4 in-plane, L5 one needle")
    assert (both.technique, both.approach) == (OT, IP)
    both = classify_text("OOP two needles")
    assert (both.technique, both.approach) == (TT, OOP)


def test_technique_and_approach_each_come_from_their_most_trusted_source() -> None:
    ds = Dataset()
    ds.PerformedProcedureStepDescription = "L5 DR R OOP"
    ds.StudyDescription = "US guided MBB TT"
    ds.SeriesDescription = "L5 in-plane"
    result = classify(ds)
    assert result.technique is TT
    assert result.provenance["technique"] == (
        "StudyDescription (0008,1030) 'US guided MBB TT' by rule technique-tt in default rules"
    )
    assert result.approach is OOP
    assert result.provenance["approach"] == (
        "PerformedProcedureStepDescription (0040,0254) 'L5 DR R OOP' by rule approach-out-of-plane "
        "in default rules (SeriesDescription said in-plane)"
    )
    assert result.levels == (SpinalLevel.L5,)  # the other fields keep the plain trust order
    assert result.provenance["levels"].startswith("PerformedProcedureStepDescription")
    assert result.side is RIGHT


def test_most_trusted_tt_or_ot_wins_among_several() -> None:
    ds = Dataset()
    ds.PerformedProcedureStepDescription = "平面外"
    ds.StudyDescription = "腰椎 一针两点"
    ds.SeriesDescription = "L4/5 two needles"
    result = classify(ds)
    assert result.technique is OT
    assert result.provenance["technique"].startswith("StudyDescription (0008,1030) '腰椎 一针两点'")
    assert result.provenance["technique"].endswith("(SeriesDescription said TT)")
    assert result.approach is OOP


def test_no_technique_when_only_the_approach_is_named() -> None:
    ds = Dataset()
    ds.PerformedProcedureStepDescription = "L5 DR R OOP"
    ds.SeriesDescription = "L5 in-plane"
    result = classify(ds)
    assert result.technique is UNK
    assert "technique" not in result.provenance
    assert result.approach is OOP


def test_site_approach_rule_listed_first(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'extends = "default"\n[[rules.approach]]\nname = "site-ipl"\ntokens = ["IPL"]\nvalue = "in-plane"\n',
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert rules.rules["approach"][0].name == "site-ipl"  # site rules come first
    assert classify_text("L5 IPL", rules).approach is IP
    result = classify_text("L5 IPL TT", rules)
    assert (result.technique, result.approach) == (TT, IP)
    assert result.provenance["approach"] == f"text 'L5 IPL TT' by rule site-ipl in rules file {path}"


def test_a_technique_rule_giving_an_approach_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text(
        'extends = "default"\n[[rules.technique]]\nname = "site-ipl"\ntokens = ["IPL"]\nvalue = "in-plane"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"needle approach, not a technique.*\[\[rules.approach\]\]"):
        load_rules(path)


def test_text_provenance_names_rule_and_origin() -> None:
    result = classify_text("L4/5 MBB R")
    assert result.provenance["levels"] == "text 'L4/5 MBB R' by rule level-range in default rules"
    assert result.provenance["side"] == "text 'L4/5 MBB R' by rule side-right-letter in default rules"
    assert result.provenance["region"] == "derived from levels L4, L5"
    assert "technique" not in result.provenance


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def test_performed_step_description_beats_series_description() -> None:
    ds = Dataset()
    ds.PerformedProcedureStepDescription = "L4/5 MBB R"
    ds.SeriesDescription = "L3 left TT"
    result = classify(ds)
    assert result.levels == (SpinalLevel.L4, SpinalLevel.L5)
    assert result.side is RIGHT
    assert result.technique is TT  # only the series description says it
    assert result.provenance["side"] == (
        "PerformedProcedureStepDescription (0040,0254) 'L4/5 MBB R' by rule side-right-letter "
        "in default rules (SeriesDescription said left)"
    )
    assert result.provenance["levels"].endswith("(SeriesDescription said L3)")
    assert result.provenance["technique"].startswith("SeriesDescription (0008,103E) 'L3 left TT'")


def test_request_attributes_sequence_is_most_trusted() -> None:
    request = Dataset()
    request.RequestedProcedureDescription = "US guided MBB L3-L5 bilat"
    ds = Dataset()
    ds.RequestAttributesSequence = Sequence([request])
    ds.PerformedProcedureStepDescription = "L4/5 right"
    result = classify(ds)
    assert result.levels == (SpinalLevel.L3, SpinalLevel.L4, SpinalLevel.L5)
    assert result.side is B
    assert result.provenance["levels"].startswith(
        "RequestAttributesSequence > RequestedProcedureDescription (0032,1060) 'US guided MBB L3-L5 bilat'"
    )
    assert "PerformedProcedureStepDescription said right" in result.provenance["side"]


def test_coded_anatomy_with_laterality_modifier() -> None:
    region = _code("11994002", "SCT", "L4 vertebra")
    region.AnatomicRegionModifierSequence = Sequence([_code("24028007", "SCT", "Right")])
    ds = Dataset()
    ds.AnatomicRegionSequence = Sequence([region])
    ds.SeriesDescription = "left"
    result = classify(ds)
    assert result.levels == (SpinalLevel.L4,)
    assert result.side is RIGHT
    assert "code (SCT, 24028007, 'Right')" in result.provenance["side"]
    assert "side-code-right" in result.provenance["side"]
    assert result.provenance["side"].endswith("(SeriesDescription said left)")


def test_codes_without_meaning_and_region_code() -> None:
    ds = Dataset()
    ds.PrimaryAnatomicStructureSequence = Sequence(
        [_code("49668003", "SCT", ""), _code("36470004", "SCT", "")]
    )
    ds.AnatomicRegionSequence = Sequence([_code("122494005", "SCT", "")])
    result = classify(ds)
    assert result.levels == (SpinalLevel.L3, SpinalLevel.L5)
    assert result.region == "cervical"  # the coded region wins over levels
    assert result.provenance["region"].startswith("AnatomicRegionSequence (0008,2218) code (SCT, 122494005")


def test_procedure_code_meaning_is_read_as_text() -> None:
    ds = Dataset()
    ds.ProcedureCodeSequence = Sequence([_code("US-MBB-OT", "99LOCAL", "Lumbar MBB one needle two points")])
    result = classify(ds)
    assert result.procedure_type is MBB
    assert result.technique is OT
    assert result.region == "lumbar"


def test_body_part_examined_gives_region_only() -> None:
    ds = Dataset()
    ds.BodyPartExamined = "CSPINE"
    ds.SeriesDescription = "L5 lumbar"
    result = classify(ds)
    assert result.region == "cervical"
    assert result.provenance["region"] == (
        "BodyPartExamined (0018,0015) 'CSPINE' by rule region-cervical in default rules "
        "(SeriesDescription said lumbar)"
    )
    assert result.levels == (SpinalLevel.L5,)


def test_body_part_spine_alone_says_nothing() -> None:
    ds = Dataset()
    ds.BodyPartExamined = "SPINE"
    assert classify(ds).region is None


def test_image_laterality_is_the_fallback_for_side() -> None:
    ds = Dataset()
    ds.SeriesDescription = "L4/5 MBB"
    ds.ImageLaterality = "L"
    result = classify(ds)
    assert result.side is LEFT
    assert result.provenance["side"].startswith("ImageLaterality (0020,0062) 'L'")
    ds.SeriesDescription = "L4/5 MBB rt"
    assert classify(ds).side is RIGHT


def test_laterality_b_is_bilateral_only_in_laterality_attributes() -> None:
    ds = Dataset()
    ds.Laterality = "B"
    assert classify(ds).side is B
    assert classify_text("B").side is None


def test_empty_dataset_classifies_to_nothing() -> None:
    result = classify(Dataset())
    assert result == Classification(
        levels=(), side=None, technique=UNK, procedure_type=None, provenance={}, region=None
    )


def test_default_rules_are_cached() -> None:
    assert default_rules() is default_rules()
    assert default_rules().origin == "default rules"


SITE_RULES = """
extends = "default"
disable = ["side.side-left-letter"]

[[rules.procedure_type]]
name = "dorsal-root-cn"
tokens = ["背根"]
value = "medial branch block"

[[rules.side]]
name = "side-right-word"
tokens = ["right", "RHS", "右"]
value = "right"

[[rules.technique]]
name = "site-one-shot"
pattern = '''\\bone[- ]?shot\\b'''
value = "OT"

[[sources]]
name = "ImageComments"
rank = 0
"""


def test_site_file_adds_overrides_and_disables(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE_RULES, encoding="utf-8")
    rules = load_rules(path)
    assert rules.origin == f"rules file {path}"
    result = classify_text("L5 背根 RHS one-shot", rules)
    assert result.procedure_type is MBB
    assert result.side is RIGHT
    assert result.technique is OT
    assert result.provenance["technique"] == (
        f"text 'L5 背根 RHS one-shot' by rule site-one-shot in rules file {path}"
    )
    assert classify_text("L4/5 L", rules).side is None  # letter rule disabled
    assert classify_text("L4/5 rt", rules).side is None  # "rt" no longer in the replaced rule
    assert classify_text("L4/5 L").side is LEFT  # defaults untouched
    assert rules.sources[0].name == "ImageComments"  # re-ranked to most trusted
    ds = Dataset()
    ds.PerformedProcedureStepDescription = "L3"
    ds.ImageComments = "L5"
    assert classify(ds, rules).levels == (SpinalLevel.L5,)


def test_standalone_file_with_own_sources(tmp_path: Path) -> None:
    path = tmp_path / "own.toml"
    path.write_text(
        """
[[sources]]
name = "ProtocolName"
rank = 1

[[rules.levels]]
name = "lv"
pattern = '(?P<region>[LS])(?P<first>\\d)'
""",
        encoding="utf-8",
    )
    rules = load_rules(path)
    ds = Dataset()
    ds.ProtocolName = "L5"
    ds.SeriesDescription = "L3 right"
    result = classify(ds, rules)
    assert result.levels == (SpinalLevel.L5,)
    assert result.side is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[[rules.side]]\nname = "broken"\npattern = "(R"\nvalue = "right"\n',
            "rule side.broken: bad regular expression '(R'",
        ),
        ('[[rules.needle]]\nname = "x"\ntokens = ["x"]\nvalue = "y"\n', "unknown field(s) ['needle']"),
        (
            '[[rules.side]]\nname = "upside"\ntokens = ["up"]\nvalue = "up"\n',
            "rule side.upside: unknown value (Side: expected one of left, right, bilateral",
        ),
        (
            '[[rules.levels]]\nname = "l6"\ntokens = ["L6"]\nvalue = "L6"\n',
            "rule levels.l6: unknown value (SpinalLevel: expected one of C1",
        ),
        (
            '[[rules.technique]]\nname = "t"\ntokens = ["x"]\n',
            "rule technique.t: 'value' is required",
        ),
        (
            '[[rules.levels]]\nname = "nogroups"\npattern = "L\\\\d"\n',
            "rule levels.nogroups: a level rule without 'value' needs named groups",
        ),
        (
            '[[sources]]\nname = "SeriesDescriptio"\nrank = 3\n',
            "source 'SeriesDescriptio': 'SeriesDescriptio' is not a DICOM attribute keyword",
        ),
        (
            '[[rules.side]]\nname = "x"\ntokens = ["x"]\nvalue = "left"\nflags = "i"\n',
            "unknown key(s) ['flags']",
        ),
        ('disable = ["side.no-such-rule"]\n', "cannot disable ['side.no-such-rule']"),
        ("[[rules.side]\n", "not valid TOML"),
    ],
)
def test_bad_rule_files_raise_clear_errors(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('extends = "default"\n' + body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_rules(tmp_path / "absent.toml")


def test_rule_restricted_to_unknown_source_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[sources]]\nname = "SeriesDescription"\nrank = 1\n'
        '[[rules.side]]\nname = "b"\npattern = "^B$"\nvalue = "bilateral"\nsources = ["Nowhere"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"rule side\.b: unknown source\(s\) \['Nowhere'\]"):
        load_rules(path)


def test_dataset_read_back_from_a_file_with_chinese_text(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.3.1")
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SeriesDescription = "腰椎 L4/5 左 两针两点"
    ds.ImageLaterality = "R"
    path = tmp_path / "clip.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = classify(dcmread(path))
    assert result.levels == (SpinalLevel.L4, SpinalLevel.L5)
    assert result.side is LEFT
    assert result.technique is TT
    assert result.region == "lumbar"
    assert result.provenance["side"] == (
        "SeriesDescription (0008,103E) '腰椎 L4/5 左 两针两点' by rule side-left-word "
        "in default rules (ImageLaterality said right)"
    )


def test_default_rules_read_every_clip_of_a_phantom_cohort(tmp_path: Path) -> None:
    """The default rules give each clip the technique and side of the cohort's manifest.

    Seed 3 with 5 patients covers OT and TT, left and right, Chinese descriptions,
    and TT procedures whose Performed Procedure Step Description ("L4-5 MBB 2
    punctures") is more trusted than the L5 clip's "L5 DR R OOP".
    """
    from pydicom import dcmread

    generate_cohort(tmp_path, 5, seed=3, frames=8)
    manifest = json.loads((tmp_path / "manifest.json").read_text("utf-8"))
    seen: set[str] = set()
    for clip in manifest["clips"]:
        ds = dcmread(tmp_path / clip["dcm"], stop_before_pixels=True)
        result = classify(ds)
        where = f"{clip['dcm']}: {result.provenance}"
        assert result.technique is Technique(clip["technique"]), where
        assert result.side is Side(clip["side"]), where
        level = SpinalLevel(clip["level"])
        performed = str(ds.PerformedProcedureStepDescription)
        if level in result.levels:
            seen.add("level")
        else:
            # The phantom writes "L4-5 MBB …" as the procedure's performed step even when the
            # procedure also blocked L3; that more trusted source wins over "L3 MB R".
            assert (level, performed.startswith("L4-5")) == (SpinalLevel.L3, True), where
            assert result.levels == classify_text(performed).levels, where
            seen.add("L3 under an L4-5 performed step")
        series = str(ds.SeriesDescription)
        if "OOP" in series and "2 punctures" in performed:
            seen.add("TT over a series' out-of-plane")
        if "腰椎" in series:
            seen.add("Chinese")
        seen.add(clip["technique"])
        seen.add(clip["side"])
    assert seen == {
        "level",
        "L3 under an L4-5 performed step",
        "TT over a series' out-of-plane",
        "Chinese",
        "OT",
        "TT",
        "left",
        "right",
    }


def test_a_ruleset_concludes_once_per_distinct_set_of_values() -> None:
    rules = load_rules()
    first, second, other = Dataset(), Dataset(), Dataset()
    first.SeriesDescription = second.SeriesDescription = "L4/5 MBB right OT"
    other.SeriesDescription = "C5/6 left TT"
    a = classify(first, rules)
    a.provenance.clear()  # a caller's copy: the remembered conclusion keeps its provenance
    b = classify(second, rules)
    assert len(rules.conclusions) == 1
    assert b.levels == (SpinalLevel.L4, SpinalLevel.L5) and b.side is Side.RIGHT
    assert b.provenance and "levels" in b.provenance
    c = classify(other, rules)
    assert len(rules.conclusions) == 2
    assert c.levels == (SpinalLevel.C5, SpinalLevel.C6) and c.side is Side.LEFT


# --- modality scope and level words in context (issue 12) ---------------------


def _series(modality: str, **attributes: str) -> Dataset:
    ds = Dataset()
    ds.Modality = modality
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_mr_protocol_and_ct_pilot_classify_nothing() -> None:
    mr = classify(
        _series("MR", ProtocolName="t1_vibe_fs_tra_bh_dyn", SeriesDescription="t1_vibe_fs_tra_bh_dyn")
    )
    ct = classify(_series("CT", SeriesDescription="T/S/C RF FAST PILOT"))
    for result in (mr, ct):
        assert result.levels == () and result.procedure_type is None and result.side is None
        assert result.technique is UNK and result.region is None and result.provenance == {}


def test_level_word_must_be_a_level_in_its_context() -> None:
    for text in ("t1_vibe_fs_tra_bh_dyn", "T1W_SE", "T1 FLAIR SAG", "t2_tse_sag", "T2* GRE", "L4_5"):
        assert classify_text(text).levels == (), text
    assert classify_text("T1-T2 facet").levels == (SpinalLevel.T1, SpinalLevel.T2)
    assert classify_text("T1 MBB R").levels == (SpinalLevel.T1,)


def test_other_modality_in_an_ultrasound_study_is_classified() -> None:
    sr = _series("SR", SeriesDescription="L4/5 MBB R")
    assert classify(sr).levels == ()
    assert classify(sr, study_modalities=["US"]).levels == (SpinalLevel.L4, SpinalLevel.L5)
    sr.ModalitiesInStudy = ["US", "SR"]
    assert classify(sr).side is RIGHT
    assert classify(_series("US", SeriesDescription="L4/5 MBB R")).procedure_type is MBB


def test_modalities_are_a_rule_set_setting(tmp_path: Path) -> None:
    assert default_rules().modalities == frozenset({"US"})
    every = tmp_path / "every.toml"
    every.write_text('extends = "default"\nmodalities = []\n', encoding="utf-8")
    ct = _series("CT", SeriesDescription="T/S/C RF FAST PILOT")
    assert classify(ct, load_rules(every)).procedure_type is RF
    both = tmp_path / "both.toml"
    both.write_text('extends = "default"\nmodalities = ["us", "XA"]\n', encoding="utf-8")
    assert load_rules(both).modalities == frozenset({"US", "XA"})
    assert classify(_series("XA", SeriesDescription="L5 RF"), load_rules(both)).levels == (SpinalLevel.L5,)
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "default"\nmodalities = "US"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="'modalities' must be a list"):
        load_rules(bad)
