checkpoint inventory:
    input:
        raw=get_tracked_raw_files(),
    output:
        inventory=OUT_DIR / "inventory.csv",
        plan=OUT_DIR / "plan.json",
        matches=OUT_DIR / "matches.csv",
    log:
        LOGS / "inventory.log",
    conda:
        "../envs/ccdcal.yaml"
    threads: config["threads"]
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        files=get_raw_files,
        unreadable_folders=get_unreadable_folders,
        untracked=get_untracked_raw_state,
        settings=get_plan_settings,
    script:
        "../scripts/inventory.py"
