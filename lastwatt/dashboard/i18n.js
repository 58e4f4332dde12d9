// Console texts in English and French (the language of the default site's village).
"use strict";

const TEXTS = {
  en: {
    sign_in: "Sign in", sign_out: "Sign out", cancel: "Cancel", user: "User", password: "Password",
    wrong_login: "Wrong user name or password.", updated: "updated",
    nav_overview: "Overview", nav_alarms: "Alarms", nav_history: "History", nav_customers: "Customers",
    nav_map: "Map", nav_actions: "Actions", nav_me: "My account", nav_docs: "API", nav_market: "Market",
    stale_unreachable: "The service is not answering: the figures below are from {age} ago and may be wrong.",
    stale_old: "No fresh data for {age}: the figures below may be out of date.",
    mode_schedule: "Following the plan", mode_soc_rules: "Plan lost: running on battery-level rules",
    mode_safe: "SAFE STATE: only priority users are supplied", mode_unknown: "Starting…",
    pv_now: "PV now", battery: "Battery", load: "Load per tier", plan: "Plan", reserve: "reserve",
    forecast: "forecast", priority: "priority", household: "households", business: "businesses",
    issued: "issued", violations: "Plan shortfalls", none: "none", on: "on", off: "off",
    dark_why: "Why connections are dark", dark_none: "Every connection is on.",
    plan_chart: "Plan, next 24 h", soc: "battery", pv_forecast: "PV forecast",
    connections: "Connections", stakes: "Stakes per business", this_round: "this round",
    next_round: "next round", kind: "kind", relay: "relay", credit: "credit", balance: "balance [coin]",
    alarms: "Alarms", severity: "severity", subject: "subject", first_seen: "first seen",
    last_seen: "last seen", count: "count", message: "message", ack: "Acknowledge", acked: "seen by",
    no_alarms: "No standing alarms.", need_login: "Sign in as the operator to see this.",
    history: "History", day: "day", week: "week", pv_actual: "PV measured", pv_fc: "PV forecast P50",
    load_tiers: "Load per tier", soc_reserve: "State of charge and reserve", plan_vs: "Planned vs delivered",
    planned: "planned", delivered: "delivered",
    customers: "Customers", search: "Search name, phone, meter…", name: "name", phone: "phone",
    wallet: "wallet", plan_name: "plan", save: "Save", saved: "Saved.", readings: "Readings",
    energy_wh: "energy per reading interval [Wh]", transactions: "Transactions", reason: "reason",
    time: "time", amount: "amount", code: "code", plan_reasons: "Plan and reasons",
    allotment: "allotment [kW]", closed: "relay", map: "Village map", producer: "producer",
    consumer: "consumer", advance: "+1 hour", advance_done: "Clock moved to {time}",
    actions: "Operator actions", force_relay: "Force a relay", connection: "connection",
    closed_on: "closed (on)", open_off: "open (off)", why: "reason", apply: "Apply", release: "Release",
    hold_business: "Hold a business", reserve_setting: "Battery reserve", replan: "Replan now",
    topup: "Top up a meter", amount_coin: "amount [coin]", key: "reference", done: "Done.",
    me: "My account", my_wallet: "My wallet", my_meters: "My meters", my_stake: "My stake",
    staked_on: "staked next round on", skip: "nobody", error: "Error",
    decisions: "Hourly credit decisions (seed 002's two-way meter)",
    community: "Community", vote_title: "Household vote", mtf_title: "Energy access (World Bank MTF), today",
    vote_none: "No vote this round.", vote_yours: "your vote", vote_for: "vote", vote_option: "option",
    vote_votes: "votes", vote_round: "Round", vote_turnout: "turnout", vote_applied: "in force",
    vote_no_applied: "none yet", need_login_mtf: "Sign in to see energy access.", mtf_tier: "MTF tier",
    mtf_households: "households", mtf_note: "From the meters' readings of",
  },
  fr: {
    sign_in: "Connexion", sign_out: "Déconnexion", cancel: "Annuler", user: "Utilisateur",
    password: "Mot de passe", wrong_login: "Nom d'utilisateur ou mot de passe incorrect.",
    updated: "mis à jour",
    nav_overview: "Vue d'ensemble", nav_alarms: "Alarmes", nav_history: "Historique",
    nav_customers: "Clients", nav_map: "Carte", nav_actions: "Actions", nav_me: "Mon compte", nav_docs: "API", nav_market: "Marché",
    stale_unreachable: "Le service ne répond pas : les chiffres ci-dessous datent d'il y a {age} et peuvent être faux.",
    stale_old: "Pas de données récentes depuis {age} : les chiffres peuvent être périmés.",
    mode_schedule: "Suit le plan", mode_soc_rules: "Plan perdu : règles selon la charge de la batterie",
    mode_safe: "ÉTAT DE SÉCURITÉ : seuls les usagers prioritaires sont alimentés", mode_unknown: "Démarrage…",
    pv_now: "PV maintenant", battery: "Batterie", load: "Charge par catégorie", plan: "Plan",
    reserve: "réserve", forecast: "prévision", priority: "prioritaires", household: "ménages",
    business: "entreprises", issued: "émis", violations: "Manques du plan", none: "aucun",
    on: "allumé", off: "éteint", dark_why: "Pourquoi des branchements sont éteints",
    dark_none: "Tous les branchements sont allumés.", plan_chart: "Plan, prochaines 24 h",
    soc: "batterie", pv_forecast: "prévision PV", connections: "Branchements",
    stakes: "Mises par entreprise", this_round: "ce tour", next_round: "tour suivant", kind: "type",
    relay: "relais", credit: "crédit", balance: "solde [coin]", alarms: "Alarmes", severity: "gravité",
    subject: "objet", first_seen: "première fois", last_seen: "dernière fois", count: "nombre",
    message: "message", ack: "Acquitter", acked: "vu par", no_alarms: "Aucune alarme en cours.",
    need_login: "Connectez-vous comme opérateur pour voir ceci.", history: "Historique", day: "jour",
    week: "semaine", pv_actual: "PV mesuré", pv_fc: "prévision PV P50", load_tiers: "Charge par catégorie",
    soc_reserve: "Charge de la batterie et réserve", plan_vs: "Prévu et livré", planned: "prévu",
    delivered: "livré", customers: "Clients", search: "Chercher nom, téléphone, compteur…", name: "nom",
    phone: "téléphone", wallet: "portefeuille", plan_name: "forfait", save: "Enregistrer",
    saved: "Enregistré.", readings: "Relevés", energy_wh: "énergie par intervalle de relevé [Wh]",
    transactions: "Transactions", reason: "raison", time: "heure", amount: "montant", code: "code",
    plan_reasons: "Plan et raisons", allotment: "allocation [kW]", closed: "relais", map: "Carte du village",
    producer: "producteur", consumer: "consommateur", advance: "+1 heure",
    advance_done: "Horloge avancée à {time}", actions: "Actions de l'opérateur",
    force_relay: "Forcer un relais", connection: "branchement", closed_on: "fermé (allumé)",
    open_off: "ouvert (éteint)", why: "raison", apply: "Appliquer", release: "Libérer",
    hold_business: "Suspendre une entreprise", reserve_setting: "Réserve de la batterie",
    replan: "Replanifier maintenant", topup: "Recharger un compteur", amount_coin: "montant [coin]",
    key: "référence", done: "Fait.", me: "Mon compte", my_wallet: "Mon portefeuille",
    my_meters: "Mes compteurs", my_stake: "Ma mise", staked_on: "misé au prochain tour sur",
    skip: "personne", error: "Erreur",
    decisions: "Décisions de crédit par heure (compteur bidirectionnel)",
    community: "Communauté", vote_title: "Vote des ménages", mtf_title: "Accès à l'énergie (MTF de la Banque mondiale), aujourd'hui",
    vote_none: "Pas de vote ce tour.", vote_yours: "votre vote", vote_for: "voter", vote_option: "option",
    vote_votes: "voix", vote_round: "Tour", vote_turnout: "participation", vote_applied: "en vigueur",
    vote_no_applied: "aucune encore", need_login_mtf: "Connectez-vous pour voir l'accès à l'énergie.",
    mtf_tier: "niveau MTF", mtf_households: "ménages", mtf_note: "D'après les relevés des compteurs du",
  },
};

// Reason codes of the plan, in both languages.
const REASONS = {
  en: {
    shed_shortage: "shed: not enough energy", no_credit: "no credit", closed: "closed (out of hours)",
    not_selected: "not selected (I of N)", surplus_only: "surplus only", held_off: "minimum off time",
    partial: "on, less than its demand", priority_short: "supply physically short",
    operator_hold: "held by the operator", budget_exhausted: "daily budget used up",
    tripped: "meter tripped", unknown: "no reason in the plan",
  },
  fr: {
    shed_shortage: "délesté : énergie insuffisante", no_credit: "pas de crédit",
    closed: "fermé (hors horaires)", not_selected: "non retenu (I parmi N)",
    surplus_only: "surplus seulement", held_off: "durée minimale d'arrêt",
    partial: "allumé, moins que sa demande", priority_short: "manque physique d'énergie",
    operator_hold: "bloqué par l'opérateur", budget_exhausted: "budget du jour épuisé",
    tripped: "compteur déclenché", unknown: "pas de raison dans le plan",
  },
};

function t(key, vars) {
  const lang = document.documentElement.lang === "fr" ? "fr" : "en";
  let s = (TEXTS[lang] && TEXTS[lang][key]) || TEXTS.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
  return s;
}

function reasonText(code) {
  const lang = document.documentElement.lang === "fr" ? "fr" : "en";
  return (REASONS[lang] && REASONS[lang][code]) || code;
}
