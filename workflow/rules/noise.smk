rule measure_noise:
    input:
        get_noise_inputs,
    output:
        NOISE / "{setup}.json",
    log:
        LOGS / "noise" / "{setup}.log",
    conda:
        "../envs/ccdcal.yaml"
    threads: config["threads"]
    resources:
        mem_mb=get_noise_mem_mb,
        runtime=30,
    params:
        plan=get_noise_plan,
        camera=get_noise_camera,
        untracked=get_noise_untracked,
        library=get_noise_library_files,
    script:
        "../scripts/measure_noise.py"
