rule master_flat:
    input:
        unpack(get_master_inputs),
    output:
        MASTERS / "{master}.fits",
    wildcard_constraints:
        master=r"flat_[A-Za-z0-9._+\-]+",
    params:
        spec=get_master_spec,
        camera=get_master_camera,
        raw_dir=str(RAW_DIR),
    log:
        LOGS / "masters" / "{master}.log",
    threads: config["threads"]
    resources:
        mem_mb=get_master_mem_mb,
        runtime=60,
    script:
        "../scripts/build_master.py"
