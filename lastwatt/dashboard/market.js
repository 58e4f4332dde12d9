// LastWatt market view: polls the read-only market API and lists the book and the trades.
"use strict";

const MARKET_POLL_MS = 2000;
const COIN = 1e6; // minor units per coin
const WH_PER_KWH = 1000;

function setText(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value;
}

function coins(minor) {
  return minor === null || minor === undefined ? "–" : (minor / COIN).toFixed(3);
}

function cell(value) {
  const td = document.createElement("td");
  td.textContent = value; // never innerHTML: owners' names come from users
  return td;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((values) => {
    const tr = document.createElement("tr");
    tr.append(...values.map(cell));
    return tr;
  }));
}

async function refreshMarket() {
  try {
    const [book, trades] = await Promise.all([
      fetch("/api/market/book?levels=20", { cache: "no-store" }).then((r) => r.json()),
      fetch("/api/market/trades?limit=50", { cache: "no-store" }).then((r) => r.json()),
    ]);
    setText("best-bid", coins(book.best_bid));
    setText("best-ask", coins(book.best_ask));
    setText("best-exec-bid", coins(book.best_executable_bid));
    setText("best-exec-ask", coins(book.best_executable_ask));
    const asks = book.levels.filter((l) => l.side === "sell").reverse();
    const bids = book.levels.filter((l) => l.side === "buy");
    fillTable("book", [...asks, ...bids].map((l) => [
      l.side, coins(l.price_per_kwh_minor), (l.listed_wh / WH_PER_KWH).toFixed(3),
      (l.executable_wh / WH_PER_KWH).toFixed(3), String(l.orders),
    ]));
    fillTable("trades", trades.trades.map((t) => [
      new Date(t.at).toLocaleTimeString("en-GB", { hour12: false }), coins(t.price_per_kwh_minor),
      (t.quantity_wh / WH_PER_KWH).toFixed(3), `${t.buyer} ← ${t.seller}`,
    ]));
    setText("updated", new Date().toLocaleTimeString("en-GB", { hour12: false }));
  } catch (error) {
    setText("updated", "failed: " + error);
  }
}

refreshMarket();
setInterval(refreshMarket, MARKET_POLL_MS);
