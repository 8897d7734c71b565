# A PixInsight master the night uses, converted into a ccdcal master product in
# output_dir/masters/imported (ccdcal.pixinsight_import); the PixInsight library is only read.
rule import_master:
    input:
        unpack(get_import_inputs),
    output:
        IMPORTED / "{master}.fits",
    log:
        LOGS / "imported" / "{master}.log",
    wildcard_constraints:
        master=r"pi_[A-Za-z0-9._+\-]+",
    conda:
        "../envs/ccdcal.yaml"
    threads: config["threads"]
    resources:
        mem_mb=get_import_mem_mb,
    params:
        spec=get_master_spec,
        camera=get_master_camera,
        settings=get_import_settings,
        source=get_import_source_state,
        library=get_master_library_files,
    script:
        "../scripts/import_master.py"
