checkpoint inventory:
    input:
        raw=[escape_braces(RAW_DIR / p) for p in get_raw_files()],
    output:
        inventory=OUT_DIR / "inventory.csv",
        plan=OUT_DIR / "plan.json",
        matches=OUT_DIR / "matches.csv",
    log:
        LOGS / "inventory.log",
    conda:
        "../../environment.yml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        files=get_raw_files(),
    script:
        "../scripts/inventory.py"
