#!/usr/bin/env python3
"""Builds EmbedTune's domain library: one BEIR directory per retrieval domain, from documentation
the project may use (Debian documentation packages, the project's own sets), each with natural-
language descriptions of the domain.

    build_library.py --packages DIR --output DIR [--faq FILE] [--agri DIR]

--packages is a directory into which the Debian packages listed in PACKAGES were unpacked
(`dpkg-deb -x`; the Makefile's `domains` target does it). A domain is a manual or a part of one:
each section heading is a query and the section's text is its one relevant document; every
section's text is in the corpus, so sections whose headings are dropped (too generic, repeated,
too short) stay as distractors. Queries are split into train and test by a hash of the domain and
the query text (20% test), so the split does not move when other domains change.

Per domain: corpus.jsonl, queries.jsonl, qrels/train.tsv, qrels/test.tsv, descriptions.json (the
description first, then paraphrases), meta.json (source, licence, language, counts). The output's
library.json lists the domains. Python's standard library only; dev-time and `make domains` only.

Debian's manpages*, debian-faq and python3.*-doc are reserved for independent evaluation and are
refused here.
"""
import argparse
import glob
import gzip
import hashlib
import html
import html.parser
import json
import os
import re
import sys

# Debian packages the library reads (unpacked under --packages). data/README.md records licences.
PACKAGES = [
    "debian-handbook", "debian-reference-en", "debian-reference-zh-cn", "installation-guide-amd64",
    "developers-reference", "maint-guide", "debian-policy", "apache2-doc", "postgresql-doc-15",
    "sqlite3-doc", "git-doc", "bash-doc", "zsh-doc", "debmake-doc", "harden-doc",
]
RESERVED = re.compile(r"^(manpages.*|debian-faq|python3\.\d+-doc)$")

HB = "usr/share/doc/debian-handbook/html"
REF = "usr/share/debian-reference"
PG = "usr/share/doc/postgresql-doc-15/html"
AP = "usr/share/doc/apache2-doc/manual/en"

# Handbook chapters (their section pages are found from each chapter page's links).
HB_PACKAGING = ["packaging-system", "apt", "debian-packaging"]
HB_SYSTEM = ["basic-configuration", "unix-services", "solving-problems", "workstation"]
HB_NETWORK = ["network-infrastructure", "network-services"]
HB_SECURITY = ["security", "advanced-administration"]
HB_PROJECT = ["the-debian-project", "case-study", "installation", "existing-setup", "derivative-distributions",
              "short-remedial-course"]


def d(name, lang, source, licence, files, descriptions, **extra):
    """A domain: name, language (en/zh), Debian source package (or the project's), licence,
    `files` (a function of the packages directory returning HTML paths, in reading order),
    descriptions (the first is the domain's description, the rest paraphrases)."""
    return dict(name=name, lang=lang, source=source, licence=licence, files=files, descriptions=descriptions, **extra)


def handbook(lang, chapters):
    def files(root):
        out = []
        for ch in chapters:
            page = os.path.join(root, HB, lang, ch + ".html")
            if not os.path.exists(page):
                continue
            out.append(page)
            text = open(page, encoding="utf-8", errors="replace").read()
            for link in re.findall(r'href="(sect\.[^"#]+\.html)', text):
                p = os.path.join(root, HB, lang, link)
                if p not in out and os.path.exists(p):
                    out.append(p)
        return out
    return files


def paths(*patterns):
    def files(root):
        out = []
        for pattern in patterns:
            for p in sorted(glob.glob(os.path.join(root, pattern))):
                if p not in out and os.path.isfile(p):
                    out.append(p)
        return out
    return files


def exclude(files, *names):
    """`files` without the pages named (a single-page copy of a whole manual repeats every section)."""
    return lambda root: [p for p in files(root) if os.path.basename(p) not in names]


def pg(*prefixes):
    def files(root):
        return [p for p in sorted(glob.glob(os.path.join(root, PG, "*.html")))
                if any(os.path.basename(p).startswith(x) for x in prefixes)]
    return files


GPL = "GPL-2+"
DOMAINS = [
    # --- Debian Administrator's Handbook (CC-BY-SA-3.0 / GPL-2+), English ---
    d("handbook-packaging", "en", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("en-US", HB_PACKAGING), [
        "Debian package management: the dpkg packaging system, .deb files and their meta-information, APT and its front ends, and building Debian packages.",
        "Questions about installing, removing and inspecting Debian packages with dpkg and APT, package dependencies, and packaging software for Debian.",
        "How Debian software packages work: dpkg, apt, apt-get, aptitude, repositories, package authentication and creating your own packages.",
        "Package management on Debian systems, from the .deb format to APT sources and building packages.",
    ]),
    d("handbook-system", "en", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("en-US", HB_SYSTEM), [
        "Configuring and running a Debian system: locales, network and users, Unix services such as boot, logging, cron and printing, troubleshooting and the desktop workstation.",
        "System administration basics on Debian: user accounts, boot process, system services, scheduling tasks, logs and solving problems.",
        "Everyday Debian configuration: shells, accounts, services started at boot, syslog, cron and at, printers and graphical desktops.",
        "How to configure a Debian machine and keep its services running.",
    ]),
    d("handbook-network", "en", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("en-US", HB_NETWORK), [
        "Network infrastructure and network services on Debian: gateways, VPNs, routing, IPv6, DNS, DHCP, mail, web, FTP, NFS and Samba servers, proxies and LDAP.",
        "Setting up Debian servers for networking: firewall gateways, OpenVPN and IPsec, name servers, web and mail servers, file sharing and directory services.",
        "Questions about Debian network administration: DNS with bind, DHCP, Apache, Postfix, NFS, Samba, Squid and OpenLDAP.",
        "Running network services on a Debian server.",
    ]),
    d("handbook-security", "en", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("en-US", HB_SECURITY), [
        "Security and advanced administration on Debian: firewalls with netfilter, security policies, AppArmor and SELinux, intrusion detection, RAID and LVM, virtualization and automated installation.",
        "Hardening and advanced Debian administration: packet filtering, supervision, compromised machines, software RAID, logical volumes, Xen, KVM and LXC.",
        "Questions about securing a Debian system and managing storage and virtual machines.",
        "Advanced Debian topics: security, RAID, LVM and virtualization.",
    ]),
    d("handbook-project", "en", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("en-US", HB_PROJECT), [
        "The Debian project and getting started: its organisation and documents, a case study, installing Debian, migrating existing setups, derivative distributions and a remedial course on Unix.",
        "About Debian as a community and how to install it: the social contract, developers, releases, installation steps, migrating from other systems, Ubuntu, Kali and other derivatives.",
        "Introductory Debian questions: what Debian is, how it is organised, how to install it and which distributions derive from it.",
        "Debian's project structure, installation and derivatives.",
    ]),
    # --- Debian Reference (GPL-2+) ---
    d("reference-system", "en", "debian-reference-en", GPL, paths(f"{REF}/ch0[1-6].en.html"), [
        "Debian Reference, system part: GNU/Linux tutorials, Debian package management, system initialization, authentication and access control, network setup and network applications.",
        "A reference for Debian users on the shell, file system, apt, systemd boot, PAM and passwords, network configuration and network applications.",
        "Questions about using and configuring a Debian system from the command line.",
        "Debian system fundamentals: tutorials, packages, init, authentication and networking.",
    ]),
    d("reference-tools", "en", "debian-reference-en", GPL, paths(f"{REF}/ch0[7-9].en.html", f"{REF}/ch1[0-2].en.html"), [
        "Debian Reference, tools part: GUI system, internationalization and localization, system tips, data management and backups, data conversion and programming.",
        "Tips for Debian users on X and Wayland desktops, locales and input methods, console tricks, archives, backups, encryption, text and image conversion, and programming tools.",
        "Questions about Debian desktop, language settings, data backup, file conversion and development tools.",
        "Practical Debian tools: desktop, i18n, tips, data and programming.",
    ]),
    d("debian-policy", "en", "debian-policy", GPL, paths("usr/share/doc/debian-policy/policy.html/*.html"), [
        "The Debian Policy Manual: requirements a Debian package must meet — archive areas, source and binary package formats, control files, maintainer scripts, relationships, shared libraries, the file system hierarchy and configuration files.",
        "Rules of Debian packaging policy: version numbers, control fields, Depends and Conflicts, maintainer scripts, shared libraries, FHS and documentation.",
        "Questions about what Debian policy requires of packages.",
        "Debian Policy: technical requirements for packages.",
    ]),
    d("developers-reference", "en", "developers-reference", "GPL-2", exclude(paths("usr/share/doc/developers-reference/docs/*.html"), "developers-reference.html", "genindex.html", "search.html"), [
        "Debian Developer's Reference: becoming a Debian member, developer duties, resources and machines, managing and uploading packages, best packaging practices and beyond packaging.",
        "How Debian developers work: the new member process, uploads, the BTS, NMUs, package transitions, porting and packaging best practices.",
        "Questions about the procedures and resources for Debian developers and maintainers.",
        "Procedures for Debian developers.",
    ]),
    d("maint-guide", "en", "maint-guide", "GPL-2+ or MIT", paths("usr/share/doc/maint-guide/html/*.en.html"), [
        "Debian New Maintainers' Guide: getting started with packaging, modifying the source, the debian/ directory files, building, checking and uploading a package.",
        "A tutorial for new Debian maintainers on creating a package: dh_make, control and rules files, changelog, copyright, quilt patches and lintian.",
        "Questions from someone making their first Debian package.",
        "Beginner's guide to Debian packaging.",
    ]),
    d("debmake", "en", "debmake-doc", "Expat", paths("usr/share/doc/debmake-doc/html/*.en.html"), [
        "Guide for Debian Maintainers (debmake): packaging tutorial with debmake, tool setup, simple and advanced packaging examples, multiarch and library packaging.",
        "How to package software for Debian with debmake and debhelper, from upstream tarball to a signed upload.",
        "Questions about debmake, debhelper and modern Debian packaging workflows.",
        "Debian packaging with debmake.",
    ]),
    d("install-guide", "en", "installation-guide-amd64", "GPL-2", paths("usr/share/doc/installation-guide-amd64/en/*.html"), [
        "The Debian installation guide for 64-bit PCs: system requirements, preparing and booting the installation media, using debian-installer, partitioning, booting the new system and preseeding.",
        "How to install Debian on amd64: hardware, boot media, the installer's steps, disk partitioning, network install and automated installation.",
        "Questions about installing Debian on a PC.",
        "Installing Debian GNU/Linux step by step.",
    ]),
    d("securing-debian", "en", "harden-doc", "GPL-2", paths("usr/share/doc/harden-doc/html/en-US/*.html"), [
        "Securing Debian Manual: hardening a Debian system before, during and after installation, securing services, security tools, intrusion detection and what to do after a compromise.",
        "How to harden Debian: secure installation, PAM, file system options, firewalls, logging, security updates and auditing tools.",
        "Questions about making a Debian server more secure.",
        "Debian hardening and system security.",
    ]),
    # --- PostgreSQL 15 documentation (PostgreSQL licence) ---
    d("postgresql-sql", "en", "postgresql-doc-15", "PostgreSQL", pg("ddl", "dml", "queries", "datatype", "functions", "indexes", "mvcc", "textsearch", "sql-syntax", "typeconv", "tutorial"), [
        "The SQL language in PostgreSQL: data definition, data manipulation, queries, data types, functions and operators, type conversion, indexes, concurrency control and full text search.",
        "PostgreSQL SQL reference topics: tables and constraints, INSERT/UPDATE/DELETE, SELECT and joins, JSON, arrays, date functions, indexes, MVCC and tsvector search.",
        "Questions about writing SQL for PostgreSQL.",
        "PostgreSQL's SQL language and data types.",
    ]),
    d("postgresql-admin", "en", "postgresql-doc-15", "PostgreSQL", pg("runtime", "backup", "continuous-archiving", "high-availability", "warm-standby", "monitoring", "maintenance", "routine", "client-authentication", "auth-", "wal", "managing-databases", "manage-ag", "user-manag", "role", "install", "upgrading", "logical-replication", "disk"), [
        "PostgreSQL server administration: installation, server configuration, client authentication, roles, managing databases, backup and restore, replication and high availability, monitoring, routine maintenance and write-ahead logging.",
        "Operating a PostgreSQL server: postgresql.conf settings, pg_hba.conf, roles, pg_dump and PITR, streaming and logical replication, VACUUM, statistics views and WAL.",
        "Questions from a PostgreSQL database administrator.",
        "Running and maintaining PostgreSQL servers.",
    ]),
    d("postgresql-programming", "en", "postgresql-doc-15", "PostgreSQL", pg("libpq", "plpgsql", "xfunc", "xaggr", "xtypes", "xoper", "xindex", "spi", "ecpg", "trigger", "event-trigger", "rules", "extend", "plpython", "plperl", "pltcl", "lo-", "largeobjects", "fdw", "tablesample", "custom-scan", "bgworker", "logicaldecoding"), [
        "Programming PostgreSQL: the libpq C library, embedded SQL, PL/pgSQL and other procedural languages, server-side functions in C, triggers, rules, extensions, SPI and foreign data wrappers.",
        "Extending and programming against PostgreSQL: client connections with libpq, stored procedures, user-defined types and operators, trigger functions and background workers.",
        "Questions about developing applications and extensions for PostgreSQL.",
        "PostgreSQL client and server-side programming.",
    ]),
    # --- Apache HTTP Server documentation (Apache-2.0) ---
    d("apache-modules", "en", "apache2-doc", "Apache-2.0", paths(f"{AP}/mod/*.html"), [
        "Apache HTTP Server modules and directives: what each module does and how its configuration directives behave, from core and mod_rewrite to mod_ssl, mod_proxy and mod_cache.",
        "Reference for Apache httpd configuration directives and the modules that provide them.",
        "Questions about a specific Apache directive or module.",
        "Apache httpd module reference.",
    ]),
    d("apache-guides", "en", "apache2-doc", "Apache-2.0", paths(f"{AP}/*.html", f"{AP}/howto/*.html", f"{AP}/rewrite/*.html", f"{AP}/ssl/*.html", f"{AP}/vhosts/*.html", f"{AP}/misc/*.html"), [
        "Apache HTTP Server guides: configuration files and sections, URL mapping, virtual hosts, SSL/TLS, URL rewriting, authentication, CGI, server-side includes, caching and performance tuning.",
        "How-tos for running Apache httpd: name-based virtual hosts, HTTPS, RewriteRule recipes, access control, logging and security tips.",
        "Questions about setting up and tuning the Apache web server.",
        "Apache web server how-to guides.",
    ]),
    # --- Others ---
    d("git-manual", "en", "git-doc", "GPL-2", paths("usr/share/doc/git-doc/user-manual.html", "usr/share/doc/git-doc/gittutorial.html", "usr/share/doc/git-doc/gittutorial-2.html", "usr/share/doc/git-doc/gitworkflows.html", "usr/share/doc/git-doc/gitcore-tutorial.html", "usr/share/doc/git-doc/giteveryday.html", "usr/share/doc/git-doc/MyFirstContribution.html", "usr/share/doc/git-doc/SubmittingPatches.html"), [
        "The Git user manual and tutorials: repositories, branches, merging, rebasing, sharing work with remotes, history exploration, the object database and contributing patches.",
        "How to use Git for version control: commits, branches, merges, conflicts, fetch and push, bisect, and Git's internals.",
        "Questions about working with Git.",
        "Git version control.",
    ]),
    d("bash-manual", "en", "bash-doc", "GPL-3+ (Debian bash-doc copyright)", paths("usr/share/doc/bash-doc/bashref.html"), [
        "The Bash Reference Manual: shell syntax, quoting, commands, functions, parameters and expansions, redirections, builtins, shell variables, job control and command-line editing.",
        "How the GNU Bash shell works: parameter expansion, arrays, here documents, pipelines, conditional expressions, readline and history.",
        "Questions about Bash shell scripting and interactive use.",
        "Bash shell reference.",
    ]),
    d("zsh-manual", "en", "zsh-doc", "Zsh licence (MIT-style)", paths("usr/share/doc/zsh-doc/html/*.html"), [
        "The Zsh manual: invocation, startup files, shell grammar, expansion and globbing, parameters, options, builtins, the line editor, completion system and modules.",
        "How the Z shell works: glob qualifiers, parameter flags, zle widgets, compinit and completion functions, zsh modules.",
        "Questions about zsh configuration and scripting.",
        "Z shell reference.",
    ]),
    d("sqlite", "en", "sqlite3-doc", "public domain", paths("usr/share/doc/sqlite3/*.html"), [
        "SQLite documentation: the SQL dialect SQLite understands, its C interface, file format, transactions and locking, the query planner, pragmas, extensions such as FTS5 and JSON, and command-line shell.",
        "How SQLite works and how to use it: CREATE TABLE and indexes, PRAGMA settings, WAL mode, the C API, virtual tables and full text search.",
        "Questions about the SQLite database engine.",
        "SQLite database documentation.",
    ]),
    # --- Chinese ---
    d("handbook-zh-admin", "zh", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("zh-CN", HB_PACKAGING + HB_SYSTEM), [
        "Debian 管理员手册（简体中文）：软件包管理系统 dpkg 与 APT、制作 Debian 软件包、系统基本配置、Unix 服务、故障排查与工作站。",
        "关于 Debian 软件包安装与管理、系统服务、用户账户、日志、定时任务和桌面配置的问题。",
        "Debian 系统管理入门：软件包、APT 源、启动过程、系统服务与问题诊断。",
        "The Debian Administrator's Handbook in Simplified Chinese: packages, APT, system configuration and services.",
    ]),
    d("handbook-zh-network", "zh", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("zh-CN", HB_NETWORK + HB_SECURITY + HB_PROJECT), [
        "Debian 管理员手册（简体中文）：网络基础设施与网络服务、安全、高级管理（RAID、LVM、虚拟化）、Debian 项目与安装。",
        "关于在 Debian 上配置网关、VPN、DNS、DHCP、邮件与网站服务器、防火墙、RAID 和虚拟机的问题。",
        "Debian 服务器的网络服务、安全加固与高级管理。",
        "The Debian Administrator's Handbook in Simplified Chinese: networking, security, advanced administration and the project.",
    ]),
    d("reference-zh-system", "zh", "debian-reference-zh-cn", GPL, paths(f"{REF}/ch0[1-6].zh-cn.html"), [
        "Debian 参考手册（简体中文）系统部分：GNU/Linux 教程、Debian 软件包管理、系统初始化、认证与访问控制、网络设置与网络应用。",
        "关于 Debian 命令行基础、apt 软件包管理、systemd 启动、PAM 与密码、网络配置的问题。",
        "Debian 系统基础知识参考。",
        "Debian Reference in Simplified Chinese: tutorials, packages, init, authentication and networking.",
    ]),
    d("reference-zh-tools", "zh", "debian-reference-zh-cn", GPL, paths(f"{REF}/ch0[7-9].zh-cn.html", f"{REF}/ch1[0-2].zh-cn.html"), [
        "Debian 参考手册（简体中文）工具部分：图形界面系统、国际化与本地化、系统技巧、数据管理与备份、数据转换和编程。",
        "关于 Debian 桌面、中文输入法与语言环境、系统小技巧、数据备份与加密、文件格式转换和编程工具的问题。",
        "Debian 实用工具与技巧参考。",
        "Debian Reference in Simplified Chinese: desktop, i18n, tips, data and programming.",
    ]),
    d("install-guide-zh", "zh", "installation-guide-amd64", "GPL-2", paths("usr/share/doc/installation-guide-amd64/zh_CN/*.html"), [
        "Debian 安装手册（简体中文，64 位 PC）：系统需求、准备与引导安装介质、使用 debian-installer、磁盘分区、启动新系统和预配置自动安装。",
        "关于在 amd64 电脑上安装 Debian 的问题：硬件要求、启动盘、安装步骤、分区和网络安装。",
        "Debian 安装步骤指南。",
        "The Debian installation guide in Simplified Chinese.",
    ]),
    d("debmake-zh", "zh", "debmake-doc", "Expat", paths("usr/share/doc/debmake-doc/html/*.zh-cn.html"), [
        "Debian 维护者指南（debmake，简体中文）：用 debmake 打包的教程、工具准备、简单与高级打包示例、多架构与库的打包。",
        "关于使用 debmake 和 debhelper 为 Debian 制作软件包的问题。",
        "Debian 打包入门与进阶。",
        "Guide for Debian Maintainers (debmake) in Simplified Chinese.",
    ]),
    d("handbook-zh-tw", "zh", "debian-handbook", "CC-BY-SA-3.0 or GPL-2+", handbook("zh-TW", HB_PACKAGING + HB_SYSTEM + HB_NETWORK + HB_SECURITY), [
        "Debian 管理者手冊（繁體中文）：套件管理、系統設定與服務、網路基礎設施與網路服務、安全與進階管理。",
        "關於 Debian 套件、APT、系統服務、網路伺服器、防火牆、RAID 與虛擬化的問題（繁體中文）。",
        "Debian 系統管理手冊繁體中文版。",
        "The Debian Administrator's Handbook in Traditional Chinese.",
    ]),
]

# The project's own question-answer sets (query → its answer), added when given.
AGRI_DESCRIPTIONS = [
    "中文农林牧渔问答：大田作物、果园、茶园、蔬菜与设施农业、林业、畜牧、家禽、水产、植保和土壤肥料，问题按种植户和养殖户的口吻提出，答案给出具体的时间、密度、温度和用量。",
    "关于种植、养殖、病虫害防治和施肥的中文问题，例如水稻病害怎么防、鱼塘缺氧怎么办、果树什么时候修剪。",
    "农业技术推广问答：农业、林业、畜牧业和渔业。",
    "Chinese agriculture, forestry, animal husbandry and fishery questions and answers for farmers.",
]
FAQ_DESCRIPTIONS = [
    "Building and renovating a home in Sweden: building permits (bygglov) and the Planning and Building Act, ROT and RUT tax deductions, checking and contracting a builder, hidden defects, roofs, bathrooms, kitchens, plumbing, electrics and costs.",
    "Homeowners' questions about construction work: which permit an extension needs, how to verify a contractor, what a renovation costs and how tax deductions for building work apply.",
    "A construction and home renovation FAQ for private homeowners.",
    "Questions about house building, renovation contracts and permits.",
]

GENERIC = {
    "introduction", "overview", "examples", "example", "description", "notes", "note", "see also", "synopsis", "options",
    "summary", "contents", "table of contents", "references", "further reading", "bugs", "author", "authors", "files",
    "environment", "exit status", "return value", "parameters", "compatibility", "caveats", "tip", "tips", "warning",
    "caution", "important", "background", "usage", "preface", "appendix", "index", "glossary", "copyright", "license",
    "概述", "简介", "介绍", "示例", "例子", "注意", "说明", "目录", "参见", "小结", "提示", "警告", "前言", "附录", "索引",
}
SKIP_TAGS = {"script", "style", "head", "title", "pre"}
NAV_CLASS = re.compile(r"\b(navheader|navfooter|toc|list-of-tables|list-of-figures|list-of-examples|headerlink|footer|menu|sidebar)\b")


class Sections(html.parser.HTMLParser):
    """Text of a page cut at headings: [(heading, body)], the text before the first heading dropped."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections, self.heading, self.body = [], None, []
        self.in_heading, self.heading_text, self.skip = 0, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.skip:
            self.skip[-1] += 1 if tag == self.skip_tag else 0
            return
        if tag in SKIP_TAGS or (tag in ("div", "nav", "ul", "p", "span") and NAV_CLASS.search(a.get("class") or "")):
            self.skip_tag, self.skip = tag, [1]
            return
        if re.fullmatch(r"h[1-6]", tag):
            self.flush()
            self.in_heading, self.heading_text = 1, []
        elif tag in ("p", "li", "dt", "dd", "tr", "br", "div", "td", "th"):
            self.body.append(" ")

    def handle_endtag(self, tag):
        if self.skip:
            if tag == self.skip_tag:
                self.skip[-1] -= 1
                if self.skip[-1] == 0:
                    self.skip = []
            return
        if self.in_heading and re.fullmatch(r"h[1-6]", tag):
            self.in_heading = 0
            self.heading = " ".join("".join(self.heading_text).split())

    def handle_data(self, data):
        if self.skip:
            return
        (self.heading_text if self.in_heading else self.body).append(data)

    def flush(self):
        if self.heading is not None:
            self.sections.append((self.heading, " ".join("".join(self.body).split())))
        self.heading, self.body = None, []

    def close(self):
        super().close()
        self.flush()


def clean_heading(h):
    h = h.replace("¶", "").strip()
    h = re.sub(r"^(Chapter|Appendix|Part|Section)\s+[\dA-Z]+\.?\s*", "", h)
    h = re.sub(r"^第\s*[\d一二三四五六七八九十]+\s*[章节部分]\s*", "", h)
    h = re.sub(r"^[\dA-Z]{1,3}(\.\d+)*\.?\s+", "", h)
    return h.strip(" .:：")


def usable(heading, body, lang):
    if heading.lower() in GENERIC or not re.search(r"\w", heading):
        return False
    if lang == "zh":
        return len(heading) >= 4 and len(body) >= 60
    return len(heading) >= 8 and len(heading.split()) >= 2 and len(body) >= 150


def split_of(domain, text):
    return "test" if int(hashlib.sha1(f"{domain}\x00{text}".encode()).hexdigest(), 16) % 5 == 0 else "train"


def write_domain(out, name, meta, pairs, extra_corpus, descriptions):
    """pairs: [(query, document)]; extra_corpus: distractor documents."""
    root = os.path.join(out, name)
    os.makedirs(os.path.join(root, "qrels"), exist_ok=True)
    docs, doc_id = [], {}

    def add(text):
        if text not in doc_id:
            doc_id[text] = f"d{len(docs)}"
            docs.append(text)
        return doc_id[text]

    qrels = {"train": [], "test": []}
    queries = []
    for i, (q, doc) in enumerate(pairs):
        qid = f"q{i}"
        queries.append({"_id": qid, "text": q})
        qrels[split_of(name, q)].append((qid, add(doc)))
    for doc in extra_corpus:
        add(doc)
    with open(os.path.join(root, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}, ensure_ascii=False) + "\n")
    with open(os.path.join(root, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    for split, rows in qrels.items():
        with open(os.path.join(root, "qrels", f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did in rows:
                f.write(f"{qid}\t{did}\t1\n")
    with open(os.path.join(root, "descriptions.json"), "w", encoding="utf-8") as f:
        json.dump(descriptions, f, ensure_ascii=False, indent=1)
    meta = dict(meta, name=name, queries=len(queries), documents=len(docs), train=len(qrels["train"]), test=len(qrels["test"]))
    with open(os.path.join(root, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1, sort_keys=True)
    return meta


def build_manual(root, spec, out, max_doc_chars):
    files = spec["files"](root)
    if not files:
        sys.exit(f"build_library: domain {spec['name']}: no files found for {spec['source']} under {root} (is the package unpacked?)")
    sections = []
    for path in files:
        parser = Sections()
        raw = open(path, "rb").read()
        if path.endswith(".gz"):
            raw = gzip.decompress(raw)
        parser.feed(raw.decode("utf-8", errors="replace"))
        parser.close()
        sections += [(clean_heading(h), html.unescape(b)[:max_doc_chars]) for h, b in parser.sections]
    counts = {}
    for h, _ in sections:
        counts[h.lower()] = counts.get(h.lower(), 0) + 1
    pairs, distractors, seen_docs = [], [], set()
    for h, body in sections:
        if not body or body in seen_docs:
            continue
        seen_docs.add(body)
        # A heading used twice in a domain is ambiguous as a query: its sections stay as distractors.
        if usable(h, body, spec["lang"]) and counts[h.lower()] == 1:
            pairs.append((h, body))
        elif len(body) >= 60:
            distractors.append(body)
    meta = dict(language=spec["lang"], source=spec["source"], licence=spec["licence"], kind="manual",
                files=[os.path.relpath(p, root) for p in files])
    return write_domain(out, spec["name"], meta, pairs, distractors, spec["descriptions"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", help="directory the Debian packages were unpacked into")
    ap.add_argument("--output")
    ap.add_argument("--list_packages", action="store_true", help="print the Debian packages the library reads, and stop")
    ap.add_argument("--faq", help="the construction FAQ (zaragoza-construction-faq's JSONL) to add as a domain")
    ap.add_argument("--agri", help="data/agri-zh to add as a domain")
    ap.add_argument("--max_doc_chars", type=int, default=2000)
    args = ap.parse_args()
    for p in PACKAGES:
        if RESERVED.match(p):
            sys.exit(f"build_library: {p} is reserved for independent evaluation")
    if args.list_packages:
        print(" ".join(PACKAGES))
        return
    if not args.packages or not args.output:
        ap.error("--packages and --output are required")
    os.makedirs(args.output, exist_ok=True)
    library = []
    for spec in DOMAINS:
        meta = build_manual(args.packages, spec, args.output, args.max_doc_chars)
        library.append(meta)
        print(f"{meta['name']:24} {meta['language']}  {meta['queries']:5} queries  {meta['documents']:5} documents  ({meta['source']})")
    if args.agri:
        pairs = []
        for path in sorted(glob.glob(os.path.join(args.agri, "*.jsonl"))):
            for line in open(path, encoding="utf-8"):
                if line.strip():
                    r = json.loads(line)
                    pairs.append((r["q"], r["a"]))
        meta = write_domain(args.output, "agri-zh", dict(language="zh", source="data/agri-zh", licence="CC-BY-4.0", kind="qa"),
                            pairs, [], AGRI_DESCRIPTIONS)
        library.append(meta)
        print(f"{'agri-zh':24} zh  {meta['queries']:5} queries  {meta['documents']:5} documents  (data/agri-zh)")
    if args.faq:
        pairs = []
        for line in open(args.faq, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                q, a = r.get("q") or r.get("query") or r.get("question"), r.get("a") or r.get("answer")
                if q and a:
                    pairs.append((q, a))
        meta = write_domain(args.output, "construction-faq", dict(language="en", source="zaragoza-construction-faq (PyPI)", licence="CC-BY-4.0", kind="qa"),
                            pairs, [], FAQ_DESCRIPTIONS)
        library.append(meta)
        print(f"{'construction-faq':24} en  {meta['queries']:5} queries  {meta['documents']:5} documents")
    with open(os.path.join(args.output, "library.json"), "w", encoding="utf-8") as f:
        json.dump({"format": "embedtune-domain-library", "version": 1, "domains": library}, f, ensure_ascii=False, indent=1)
    print(f"build_library: {len(library)} domains in {args.output}")


if __name__ == "__main__":
    main()
