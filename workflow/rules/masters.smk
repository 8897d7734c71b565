# One rule per kind of master (bias, dark, flat): the same job (build_master.py), told
# apart by the master's name, which the plan starts with its kind.
rule master_bias:
    input:
        unpack(get_master_inputs),
    output:
        master=MASTERS / "{master}.fits",
        report=MASTER_REPORTS / "{master}.json",
        preview=PREVIEWS / "{master}.npy",
    log:
        LOGS / "masters" / "{master}.log",
    wildcard_constraints:
        master=r"bias_[A-Za-z0-9._+\-]+",
    conda:
        "../envs/ccdcal.yaml"
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


use rule master_bias as master_dark with:
    wildcard_constraints:
        master=r"dark_[A-Za-z0-9._+\-]+",


use rule master_bias as master_flat with:
    wildcard_constraints:
        master=r"flat_[A-Za-z0-9._+\-]+",


# A fringe frame (ccdcal.fringe_master): made from tonight's lights of a fringing band,
# each calibrated with its own bias, dark and flat; a light job then subtracts it.
rule master_fringe:
    input:
        unpack(get_master_inputs),
    output:
        master=MASTERS / "{master}.fits",
        report=MASTER_REPORTS / "{master}.json",
        preview=PREVIEWS / "{master}.npy",
    log:
        LOGS / "masters" / "{master}.log",
    wildcard_constraints:
        master=r"fringe_[A-Za-z0-9._+\-]+",
    conda:
        "../envs/ccdcal.yaml"
    threads: config["threads"]
    resources:
        mem_mb=get_master_mem_mb,
        runtime=get_master_runtime,
    params:
        spec=get_master_spec,
        camera=get_master_camera,
        library=get_master_library_files,
    script:
        "../scripts/build_fringe.py"
