rule calibrate_lights:
    input:
        unpack(get_light_group_inputs),
    output:
        directory(OUT_DIR / "work" / "lights" / "{group}"),
    params:
        group=get_light_group_spec,
        camera=get_light_group_camera,
        raw_dir=str(RAW_DIR),
    log:
        LOGS / "lights" / "{group}.log",
    resources:
        mem_mb=get_light_group_mem_mb,
        runtime=60,
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
    script:
        "../scripts/publish.py"
