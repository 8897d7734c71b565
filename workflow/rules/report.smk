rule summary:
    input:
        inventory=OUT_DIR / "inventory.csv",
        plan=OUT_DIR / "plan.json",
        groups=get_light_group_dirs,
        masters=get_master_reports,
        noise=get_noise_records,
        calibrated=OUT_DIR / "calibrated",
    output:
        csv=OUT_DIR / "summary.csv",
        txt=OUT_DIR / "summary.txt",
    log:
        LOGS / "summary.log",
    localrule: True
    conda:
        "../../environment.yml"
    params:
        output_dir=OUT_DIR,
    script:
        "../scripts/summary.py"
