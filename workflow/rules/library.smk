if config["library_dir"]:

    rule file_in_library:
        input:
            MASTERS / "{master}.fits",
        output:
            Path(config["library_dir"])
            / "{kind}"
            / "{camera}"
            / "{day}"
            / "{master}_{identity}.fits",
        log:
            LOGS
            / "library"
            / "{kind}"
            / "{camera}"
            / "{day}"
            / "{master}_{identity}.log",
        wildcard_constraints:
            kind="|".join(LIGHT_MASTERS),
            identity="[0-9a-f]{16}",
            day=r"\d{4}-\d{2}-\d{2}|undated",
        localrule: True
        conda:
            "../envs/ccdcal.yaml"
        script:
            "../scripts/file_in_library.py"
