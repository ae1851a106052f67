//! The typed API the solver uses: stages, spans that point at the exact text, typed flags,
//! heredoc contents, which instructions expand, and never failing on bad input.

use std::time::Duration;

use rbuild_parser::{
    Chmod, CommandForm, HealthcheckKind, Instruction, MountSharing, MountType, NetworkMode, Rule,
    parse, parse_bytes,
};

fn text(src: &str, span: rbuild_parser::Span) -> &str {
    &src[span.start..span.end]
}

/// Global ARGs and stages are grouped with names and indexes.
#[test]
fn stages_group_instructions() {
    let src =
        "ARG A=1\nARG B\nFROM alpine AS Build\nRUN x\nFROM scratch\nCOPY --from=build /a /a\n";
    let p = parse(src);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let st = p.dockerfile.stages();
    assert_eq!(st.global_args.len(), 2);
    assert_eq!(st.stages.len(), 2);
    assert_eq!(st.stages[0].name().as_deref(), Some("build"));
    assert_eq!(st.stages[0].instructions.len(), 1);
    assert_eq!(st.stages[1].index, 1);
    assert_eq!(st.stages[1].name(), None);
}

/// Flag spans cover exactly `--name=value`; word spans cover the word, across continuations.
#[test]
fn spans_point_at_exact_text() {
    let src = "FROM a\nCOPY --chown=$UID \\\n   --from=a src \\\n  /dst/\n";
    let p = parse(src);
    let Instruction::Copy(c) = &p.dockerfile.instructions[1] else {
        panic!()
    };
    let chown = c.flags.chown.as_ref().unwrap();
    assert_eq!(text(src, chown.span), "--chown=$UID");
    assert_eq!(chown.raw, "$UID");
    assert_eq!(chown.value.as_deref(), Some("$UID"));
    assert_eq!(text(src, c.from.as_ref().unwrap().span), "--from=a");
    assert_eq!(text(src, c.sources[0].span), "src");
    assert_eq!(text(src, c.dest.span), "/dst/");
    assert_eq!(c.meta.start_line, 2);
    assert_eq!(c.meta.end_line, 4);
    assert!(
        text(src, c.meta.span).starts_with("COPY") && text(src, c.meta.span).ends_with("/dst/")
    );
}

/// Static flag values are typed; values with variables stay raw for the solver.
#[test]
fn flags_are_typed_when_static() {
    let src = "FROM a\nRUN --mount=type=cache,target=/c,sharing=private --mount=type=secret,id=$ID --network=none true\nCOPY --chmod=755 --link a /b\nHEALTHCHECK --interval=1m30s --retries=2 CMD check\n";
    let p = parse(src);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let ins = &p.dockerfile.instructions;
    let Instruction::Run(r) = &ins[1] else {
        panic!()
    };
    assert_eq!(r.mounts[0].kind, MountType::Cache);
    assert_eq!(r.mounts[0].sharing, Some(MountSharing::Private));
    assert!(r.mounts[1].deferred);
    assert_eq!(r.network.as_ref().unwrap().value, Some(NetworkMode::None));
    assert!(matches!(&r.command, CommandForm::Shell(w) if w.value == "true"));
    let Instruction::Copy(c) = &ins[2] else {
        panic!()
    };
    assert_eq!(
        c.flags.chmod.as_ref().unwrap().value,
        Some(Chmod::Octal(0o755))
    );
    assert_eq!(c.flags.link.as_ref().unwrap().value, Some(true));
    let Instruction::Healthcheck(h) = &ins[3] else {
        panic!()
    };
    assert_eq!(
        h.interval.as_ref().unwrap().value,
        Some(Duration::from_secs(90))
    );
    assert_eq!(h.retries.as_ref().unwrap().value, Some(2));
    assert!(matches!(
        &h.kind,
        HealthcheckKind::Cmd(CommandForm::Shell(_))
    ));
}

/// Heredoc bodies keep their text; `<<-` strips tabs in `content()`; quoted names do not expand.
#[test]
fn heredocs_are_attached() {
    let src = "FROM a\nRUN <<-'EOF' sh\n\techo $HOME\n\tEOF\nCOPY <<x.txt <<y.txt /d/\none\nx.txt\ntwo\ny.txt\n";
    let p = parse(src);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let Instruction::Run(r) = &p.dockerfile.instructions[1] else {
        panic!()
    };
    assert_eq!(r.heredocs[0].body, "\techo $HOME\n");
    assert_eq!(r.heredocs[0].content(), "echo $HOME\n");
    assert!(!r.heredocs[0].expand);
    let Instruction::Copy(c) = &p.dockerfile.instructions[2] else {
        panic!()
    };
    assert!(c.sources.is_empty());
    let names: Vec<_> = c.heredocs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["x.txt", "y.txt"]);
    assert_eq!(c.heredocs[1].body, "two\n");
}

/// Which instructions the builder expands, including ONBUILD triggers.
#[test]
fn expansion_set_matches_buildkit() {
    let p = parse("FROM a\nRUN x\nENV A=1\nONBUILD COPY a b\nONBUILD RUN y\nCMD z\nWORKDIR /w\n");
    let e: Vec<bool> = p
        .dockerfile
        .instructions
        .iter()
        .map(Instruction::expands_variables)
        .collect();
    assert_eq!(e, [true, false, true, true, false, false, true]);
}

/// ENV keeps values as written and marks the legacy form.
#[test]
fn env_values_stay_unexpanded() {
    let p = parse("FROM a\nENV A=\"x y\" B=$A\nENV C the rest\n");
    let Instruction::Env(e) = &p.dockerfile.instructions[1] else {
        panic!()
    };
    assert_eq!(e.vars[0].value.value, "\"x y\"");
    assert_eq!(e.vars[1].value.value, "$A");
    let Instruction::Env(l) = &p.dockerfile.instructions[2] else {
        panic!()
    };
    assert!(l.vars[0].legacy);
    assert_eq!(l.vars[0].value.value, "the rest");
}

/// BOM and CRLF are accepted; invalid UTF-8 is an error with its offset, not a panic.
#[test]
fn bytes_input_is_handled() {
    let p = parse_bytes(b"\xef\xbb\xbfFROM a\r\nRUN echo \\\r\n  b\r\n");
    assert!(!p.parsed.has_errors(), "{:?}", p.parsed.diagnostics);
    assert_eq!(
        p.parsed.dockerfile.dump(),
        "(from \"a\")\n(run \"echo   b\")\n"
    );
    let bad = parse_bytes(b"FROM a\nRUN \xff\n");
    let e = bad.parsed.errors().next().unwrap();
    assert_eq!(e.code, "rbuild::parse::invalid_utf8");
    assert_eq!((e.line, e.column), (2, 5));
}

/// The escape directive switches continuation and escaping to backtick.
#[test]
fn backtick_escape_directive() {
    let p = parse("# escape=`\nFROM a\nRUN dir C:\\ `\n  /w\n");
    assert_eq!(p.dockerfile.directives.escape, '`');
    assert_eq!(
        p.dockerfile.dump(),
        "(from \"a\")\n(run \"dir C:\\\\   /w\")\n"
    );
}

/// The typed tree serializes with typed flags and spans (what `rbuild parse --format json`
/// prints as `instructions`).
#[test]
fn json_has_typed_instructions_with_spans() {
    let p = parse("FROM alpine AS b\nCOPY --chown=1:1 a /b\n");
    let v = serde_json::to_value(&p.dockerfile.instructions).unwrap();
    let copy = &v[1];
    assert_eq!(copy["instruction"], "COPY");
    assert_eq!(copy["flags"]["chown"]["raw"], "1:1");
    assert_eq!(copy["flags"]["chown"]["span"]["start"], 22);
    assert_eq!(copy["dest"]["value"], "/b");
}

/// Lint warnings carry their [`Rule`], serialized as BuildKit's name; `# check=skip=` is read
/// once into the rules it switches off, ignoring case, with unknown names kept for a warning.
#[test]
fn lint_rules_are_typed_and_skips_are_read_once() {
    let p = parse("# check=skip=jsonargsrecommended,Nope\nFROM a AS B\nCMD x\n");
    let check = &p.dockerfile.directives.check;
    assert_eq!(check.skip, ["jsonargsrecommended", "Nope"]);
    assert!(check.skips(Rule::JsonArgsRecommended));
    assert!(!check.skips(Rule::StageNameCasing));
    assert_eq!(check.unknown_skips, ["Nope"]);
    let rules: Vec<Option<Rule>> = p.diagnostics.iter().map(|d| d.rule).collect();
    assert_eq!(rules, [None, Some(Rule::StageNameCasing)]);
    let v = serde_json::to_value(&p.diagnostics[1]).unwrap();
    assert_eq!(v["rule"], "StageNameCasing");
    assert_eq!(
        v["url"],
        "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"
    );
    assert_eq!(Rule::JsonArgsRecommended.to_string(), "JSONArgsRecommended");
    assert!(
        parse("# check=skip=all\nFROM a AS B\nCMD x\n")
            .diagnostics
            .is_empty()
    );
}
