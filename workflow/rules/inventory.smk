checkpoint inventory:
    input:
        raw=[escape_braces(RAW_DIR / p) for p in get_raw_files()],
    output:
        inventory=OUT_DIR / "inventory.csv",
        plan=OUT_DIR / "plan.json",
    params:
        raw_dir=str(RAW_DIR),
        files=get_raw_files(),
    log:
        LOGS / "inventory.log",
    resources:
        mem_mb=1000,
        runtime=30,
    script:
        "../scripts/inventory.py"
