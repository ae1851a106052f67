//! ONBUILD triggers stored in a base image's config: each is parsed back into the one
//! instruction it is, inside a synthetic `ONBUILD` line so the parser applies its own trigger
//! rules (no FROM, MAINTAINER or nested ONBUILD; heredocs allowed).

use rbuild_parser::{Instruction, LineIndex};

/// A parsed trigger; its spans are offsets into `src` (the synthetic document).
pub struct Trigger {
    pub src: String,
    pub lines: LineIndex,
    pub instruction: Instruction,
}

/// The document a trigger is parsed in: a stage whose only instruction is the ONBUILD.
const PREFIX: &str = "FROM scratch\nONBUILD ";

/// Parse one trigger. The error is the reason and a help line, for a report at the FROM line.
pub fn parse(text: &str) -> Result<Trigger, (String, Option<String>)> {
    if text.trim().is_empty() {
        return Err(("the trigger is empty".into(), rebuild_help()));
    }
    let src = format!("{PREFIX}{text}\n");
    let parsed = rbuild_parser::parse(&src);
    if let Some(err) = parsed.errors().next() {
        return Err((err.message.clone(), err.help.clone().or_else(rebuild_help)));
    }
    let mut instructions = parsed.dockerfile.instructions.into_iter();
    let (Some(Instruction::From(_)), Some(Instruction::Onbuild(onbuild)), None) = (
        instructions.next(),
        instructions.next(),
        instructions.next(),
    ) else {
        return Err((
            "an ONBUILD trigger must be a single instruction".into(),
            rebuild_help(),
        ));
    };
    let lines = LineIndex::new(&src);
    Ok(Trigger {
        src,
        lines,
        instruction: *onbuild.trigger,
    })
}

fn rebuild_help() -> Option<String> {
    Some("rebuild the base image with a valid `ONBUILD` instruction".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger parses to its instruction, spans inside the synthetic text.
    #[test]
    fn trigger_is_one_instruction() {
        let t = parse("COPY ob.txt /onbuild/").unwrap();
        assert!(matches!(t.instruction, Instruction::Copy(_)));
        let span = t.instruction.span();
        assert_eq!(&t.src[span.start..span.end], "COPY ob.txt /onbuild/");
        let t = parse("RUN <<EOF\necho hi > /hi\nEOF").unwrap();
        assert!(matches!(t.instruction, Instruction::Run(_)));
    }

    /// FROM, MAINTAINER and ONBUILD are refused as triggers, as is more than one instruction.
    #[test]
    fn forbidden_and_multiple_triggers_are_refused() {
        for bad in [
            "FROM busybox",
            "MAINTAINER me",
            "ONBUILD RUN true",
            "RUN a\nRUN b",
            "",
            "COPY",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let Err((reason, _)) = parse("FROM busybox") else {
            panic!()
        };
        assert!(reason.contains("FROM"), "{reason}");
    }
}
