checkpoint inventory:
    input:
        raw=get_tracked_raw_files(),
    output:
        inventory=OUT_DIR / "inventory.csv",
        plan=OUT_DIR / "plan.json",
        matches=OUT_DIR / "matches.csv",
    log:
        LOGS / "inventory.log",
    localrule: True
    threads: config["threads"]
    params:
        files=get_raw_files,
        unreadable_folders=get_unreadable_folders,
        untracked=get_untracked_raw_state,
        settings=get_plan_settings,
    run:
        from ccdcal.jobs.inventory import inventory_job

        # outputs in its order: inventory.csv, plan.json, matches.csv
        run_logged(
            log[0],
            inventory_job,
            params.files,
            config,
            *output,
            params.unreadable_folders,
            threads,
        )
