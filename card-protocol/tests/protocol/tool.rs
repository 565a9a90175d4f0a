//! The `issuer` binary end to end: init, public key, personalize, top-up; its outputs work on a card.

use std::process::Command;

use card_protocol::{
    apdu::{self, chain, sw},
    batch::NumberBatch,
    card::{CardApplication, CardFile, CardInfo},
    token::Token,
};

fn issuer(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_issuer"))
        .current_dir(dir)
        .args(["--state", "issuer.json"])
        .args(args)
        .output()
        .expect("issuer runs")
}

#[test]
fn issuer_tool_personalizes_cards_and_signs_top_ups() {
    let dir = tempfile::tempdir().expect("dir");
    let init = issuer(
        dir.path(),
        &[
            "init",
            "--issuer-id",
            "01020304-0506-0708-090a-0b0c0d0e0f10",
            "--key-id",
            "3",
            "--prefix",
            "400012",
        ],
    );
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(
        !issuer(
            dir.path(),
            &[
                "init",
                "--issuer-id",
                "01020304-0506-0708-090a-0b0c0d0e0f10",
                "--prefix",
                "400012"
            ]
        )
        .status
        .success(),
        "never overwrites a key"
    );

    let public = issuer(dir.path(), &["public-key"]);
    let summary: serde_json::Value = serde_json::from_slice(&public.stdout).expect("json");
    assert_eq!(summary["keyId"], 3);
    assert_eq!(summary["prefix"], "400012");
    assert_eq!(summary["issuer"], "0102030405060708090a0b0c0d0e0f10");

    let personalize = |name: &str| {
        issuer(
            dir.path(),
            &[
                "personalize",
                "--card-out",
                name,
                "--numbers",
                "4",
                "--max-amount",
                "25.50",
                "--currency",
                "EUR",
            ],
        )
    };
    assert!(personalize("a.json").status.success());
    assert!(personalize("b.json").status.success());
    assert!(
        !personalize("a.json").status.success(),
        "never overwrites a card"
    );
    let a = CardFile::load(&dir.path().join("a.json")).expect("card a");
    let b = CardFile::load(&dir.path().join("b.json")).expect("card b");
    let numbers = |card: &CardFile| -> Vec<[u8; 16]> {
        card.numbers
            .iter()
            .map(|t| {
                *Token::from_base64url(t)
                    .expect("token")
                    .body
                    .number
                    .digits()
            })
            .collect()
    };
    let (na, nb) = (numbers(&a), numbers(&b));
    assert!(
        na.iter().all(|n| !nb.contains(n)),
        "the persistent counter never hands a number out twice"
    );
    let first = Token::from_base64url(&a.numbers[0]).expect("token");
    assert_eq!(
        first.body.restrictions.max_amount_minor, 2550,
        "25.50 EUR in minor units"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["issuer.json", "a.json"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{file} holds a secret key");
        }
    }

    let top_up = issuer(
        dir.path(),
        &[
            "top-up",
            "--card-id",
            &a.card_id,
            "--out",
            "batch.bin",
            "--numbers",
            "6",
            "--max-amount",
            "10",
        ],
    );
    assert!(
        top_up.status.success(),
        "{}",
        String::from_utf8_lossy(&top_up.stderr)
    );
    let batch = NumberBatch::decode(&std::fs::read(dir.path().join("batch.bin")).expect("batch"))
        .expect("decodes");
    assert_eq!(
        (
            batch.load_counter,
            batch.tokens.len(),
            batch.tokens[0].body.sequence
        ),
        (2, 6, 5)
    );

    let mut card = CardApplication::from_file(&a).expect("card");
    assert_eq!(
        card.process(&apdu::Command::select().encode(), 0)
            .response
            .sw,
        sw::OK
    );
    let mut status = 0;
    for command in chain(
        apdu::CLA_PROPRIETARY,
        apdu::INS_LOAD_NUMBERS,
        &batch.encode(),
    ) {
        status = card.process(&command.encode(), 0).response.sw;
    }
    assert_eq!(status, sw::OK);
    let info = card.process(
        &apdu::Command::new(0x80, apdu::INS_CARD_INFO, 0, 0, &[], Some(256)).encode(),
        0,
    );
    assert_eq!(
        CardInfo::decode(&info.response.data)
            .expect("info")
            .numbers_left,
        10
    );

    // Bad amounts are refused with a message.
    let bad = issuer(
        dir.path(),
        &[
            "personalize",
            "--card-out",
            "c.json",
            "--max-amount",
            "1.234",
            "--currency",
            "EUR",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("decimals"));
}
