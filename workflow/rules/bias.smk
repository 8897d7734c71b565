rule master_bias:
    input:
        unpack(get_master_inputs),
    output:
        master=MASTERS / "{master}.fits",
        report=MASTER_REPORTS / "{master}.json",
        preview=report(
            PREVIEWS / "{master}.png",
            caption="../report/master_preview.rst",
            category="3. Masters",
            labels={"figure": "{master} image"},
        ),
        histogram=report(
            PREVIEWS / "{master}_histogram.png",
            caption="../report/master_histogram.rst",
            category="3. Masters",
            labels={"figure": "{master} histogram"},
        ),
    log:
        LOGS / "masters" / "{master}.log",
    wildcard_constraints:
        master=r"bias_[A-Za-z0-9._+\-]+",
    conda:
        "../../environment.yml"
    threads: config["threads"]
    resources:
        mem_mb=get_master_mem_mb,
        runtime=get_master_runtime,
    params:
        spec=get_master_spec,
        camera=get_master_camera,
        library=get_master_library_files,
        quality_stop=get_quality_stop,
    script:
        "../scripts/build_master.py"
