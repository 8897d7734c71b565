rule calibrate_lights:
    input:
        unpack(get_light_group_inputs),
    output:
        directory(LIGHT_GROUPS / "{group}"),
    log:
        LOGS / "lights" / "{group}.log",
    conda:
        "../envs/ccdcal.yaml"
    threads: config["threads"]
    resources:
        mem_mb=get_light_group_mem_mb,
        runtime=get_light_group_runtime,
    params:
        group=get_light_group_spec,
        camera=get_light_group_camera,
        untracked=get_light_group_untracked,
        library=get_light_group_library_files,
        quality_stop=get_quality_stop,
    script:
        "../scripts/calibrate_lights.py"


rule publish_calibrated:
    input:
        get_light_group_dirs,
    output:
        directory(OUT_DIR / "calibrated"),
    log:
        LOGS / "publish.log",
    localrule: True
    run:
        from ccdcal.publish import publish_job

        run_logged(
            log[0],
            publish_job,
            input,
            output[0],
            light_cache=OUT_DIR / LIGHT_CACHE_DIR,
        )
