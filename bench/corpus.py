"""Deterministic agent-memory corpus and queries for the benchmarks.

Templates x vocabulary (people, projects, tools, preferences, events, dates, numbers) give
realistic, varied memories without shipping a data set; the same seed gives the same corpus,
so runs on different days or machines compare like with like.
"""

from __future__ import annotations

import random
from typing import Any

PEOPLE = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Gustavo", "Hana", "Ivan", "Jun", "Kofi",
          "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Ravi", "Sofia", "Tomas"]
PROJECTS = ["Atlas", "Borealis", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Helix", "Juniper",
            "Kestrel", "Lumen", "Meridian"]
TOOLS = ["PostgreSQL", "Redis", "Kubernetes", "Terraform", "GitHub Actions", "Grafana", "Sentry", "Docker",
         "pytest", "Airflow", "Kafka", "Snowflake", "Figma", "Jira"]
PREFS = ["dark mode", "short status updates", "tabs over spaces", "morning meetings", "async code review",
         "written specs", "strict type hints", "Slack over email", "green tea", "vegetarian food",
         "window seats", "metric units", "bullet-point summaries", "quiet Fridays"]
EVENTS = ["release", "launch", "retrospective", "database migration", "outage", "customer demo",
          "offsite", "security audit", "design review", "load test"]
TASKS = ["deployments", "on-call", "code review", "data backfills", "incident response", "release notes",
         "onboarding", "budget planning", "log analysis", "benchmarking"]
CITIES = ["Berlin", "Lagos", "Lisbon", "Osaka", "Toronto", "Nairobi", "Austin", "Seoul", "Lima"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]

TEMPLATES: dict[str, list[str]] = {
    "fact": ["{p} is the tech lead of project {proj} and works from the {city} office.",
             "Project {proj} uses {tool} for {task}, with a budget of {n} hours per month.",
             "{p} owns {task} for {proj} and reports to {p2}."],
    "preference": ["{p} prefers {pref} and strongly dislikes {pref2}.",
                   "When doing {task}, {p} likes to use {tool} rather than {tool2}.",
                   "The user said they want {pref} in every reply about project {proj}."],
    "episode": ["On {date}, the {proj} {event} was delayed by {n} minutes because {tool} ran out of disk.",
                "{p} and {p2} met in {city} on {date} to discuss the {proj} {event}.",
                "During the {event} on {date}, {p} rolled back {proj} after {n} failed requests."],
    "procedure": ["To run the {proj} {event}, check {tool} first, notify {p}, then wait {n} minutes.",
                  "For {task} on {proj}: open {tool}, export the last {n} days, and send the file to {p}.",
                  "If {tool} alerts during {task}, page {p} and then {p2} after {n} minutes."],
    "observation": ["{p} seemed frustrated during the {proj} {event}; the {tool} alerts were noisy.",
                    "The {proj} dashboards in {tool} show about {n} errors per hour since {date}.",
                    "{p} answers faster on {pref} days and tends to skip {task}."],
}
EXTRAS = ["{p2} confirmed this later in the {city} channel.",
          "This matters for {task2} on project {proj2} next quarter.",
          "Follow up with {p2} before {date2} about the {tool2} bill of {n2} dollars.",
          "Note that {tool2} version 1.{n2} is pinned for compatibility with the {proj2} stack.",
          "It came up twice in the conversation, so the assistant marked it as important.",
          "{p2} disagreed and suggested moving {task2} to {tool2} instead, citing {n2} incidents.",
          "The decision should be revisited after the {proj2} {event2} in {city}."]
QUERIES = ["What does {p} prefer?", "Which tool does project {proj} use for {task}?",
           "When was the {proj} {event}?", "Who leads project {proj}?", "How do we run the {proj} {event}?",
           "What went wrong with {tool} during the {event}?", "Where is {p} based?",
           "How does {p} feel about {pref}?", "Who should I page when {tool} alerts?",
           "What is the budget for {task} on {proj}?", "What did {p} and {p2} talk about in {city}?",
           "steps for {task} with {tool}"]


def _fields(rng: random.Random) -> dict[str, Any]:
    """One random draw of every placeholder, so templates and extras can mix freely."""

    def date() -> str:
        return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(2023, 2025)}"

    p, p2 = rng.sample(PEOPLE, 2)
    proj, proj2 = rng.sample(PROJECTS, 2)
    tool, tool2 = rng.sample(TOOLS, 2)
    pref, pref2 = rng.sample(PREFS, 2)
    task, task2 = rng.sample(TASKS, 2)
    event, event2 = rng.sample(EVENTS, 2)
    return dict(p=p, p2=p2, proj=proj, proj2=proj2, tool=tool, tool2=tool2, pref=pref, pref2=pref2,
                task=task, task2=task2, event=event, event2=event2, city=rng.choice(CITIES),
                date=date(), date2=date(), n=rng.randint(2, 500), n2=rng.randint(2, 90))


def generate_memories(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """N unique, varied memories (8-60ish words), identical for a given seed."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        kind = rng.choice(list(TEMPLATES))
        f = _fields(rng)
        parts = [rng.choice(TEMPLATES[kind]).format(**f)]
        target = rng.randint(8, 60)
        words = len(parts[0].split())
        for extra in rng.sample(EXTRAS, len(EXTRAS)):
            text = extra.format(**f)
            if words >= target or words + len(text.split()) > 60:
                break
            parts.append(text)
            words += len(text.split())
        content = " ".join(parts)
        if content in seen:
            continue
        seen.add(content)
        tags = rng.sample([f["proj"].lower(), f["tool"].lower().replace(" ", "-"), kind, "work"],
                          rng.randint(0, 3))
        session = f"session-{rng.randint(1, 400):04d}" if rng.random() < 0.6 else ""
        out.append({"content": content, "kind": kind, "tags": tags, "session_id": session})
    return out


def generate_queries(n: int, seed: int = 43) -> list[str]:
    """Question-style paraphrases over the memories' vocabulary (never verbatim content)."""
    rng = random.Random(seed)
    return [rng.choice(QUERIES).format(**_fields(rng)) for _ in range(n)]
