// The self-service page: prove control of the waybill's phone, then see and act on one's own data.
// Everything shown is set with textContent, as text, never parsed as markup. The access token lives in memory
// and in sessionStorage (this tab only, gone when it closes); nothing goes to persistent storage or cookies.
"use strict";
(function () {
  const SESSION_KEY = "waybill.my.session";
  const REQUESTS_PREFIX = "waybill.my.requests.";
  const PARTY = { sender: "寄件人", recipient: "收件人" };
  const FIELDS = [["name", "姓名"], ["phone", "电话"], ["province", "省份"], ["city", "城市"],
    ["district", "区县"], ["address", "详细地址"]];
  const FIELD_NAME = Object.fromEntries(FIELDS);
  const SHIPMENT_STATUS = { created: "已下单", printed: "已打印面单", in_transit: "运输中",
    out_for_delivery: "派送中", delivered: "已签收", cancelled: "已取消" };
  const REQUEST_TYPE = { correct: "更正信息", delete: "删除信息", withdraw_consent: "撤回同意", complaint: "投诉" };
  const REQUEST_STATUS = { received: "已受理，处理中", completed: "已办结", rejected: "未予办理" };
  const TYPE_HELP = {
    correct: "填写需要更正的项目，我们核实后更正，面单将重新打印。",
    delete: "删除后信息无法恢复；包裹仍在派送时需等派送结束后才能删除。",
    withdraw_consent: "撤回后我们不再基于您的同意处理您的信息（派送所必需的除外）。",
    complaint: "请写明投诉内容，我们会在答复期限内处理并告知结果。",
  };
  const ROLE = { courier: "快递员", dispatcher: "调度员", sorter: "分拣员", auditor: "审计员",
    privacy_officer: "隐私保护专员", admin: "管理员", merchant: "寄件商户", subject: "您本人", system: "系统",
    partner: "合作方", anonymous: "未登录的请求" };
  const PARTNER = { sms_provider: "短信服务商", virtual_number_provider: "隐私号服务商" };
  const PURPOSE = { delivery: "派送", fulfilment: "履行寄递服务", data_subject_request: "处理您的请求",
    data_subject_access: "您本人查阅", data_subject_correction: "按您的请求更正", subject_verification: "验证您的身份",
    complaint: "处理投诉", legal_order: "依法配合调查", security_incident: "安全事件处置", retention: "到期删除" };
  const ACTION = { "shipment.create": "录入运单", "shipment.read": "查看运单", "shipment.search": "按电话查询",
    "shipment.cancel": "取消运单", "shipment.correct": "更正信息", "label.print": "打印面单",
    "label.print_again": "再次打印面单", "label.reprint": "重新打印面单", "print_job.create": "批量打印面单",
    "courier.scan": "快递员扫描面单", "courier.call": "快递员通过隐私号联系您", "courier.deliver": "派送签收",
    "dispatch.assign": "分配快递员", "privacy.read": "隐私官查看", "subject.challenge": "发送验证码",
    "subject.session": "身份验证", "subject.data_read": "您本人查看", "subject.access_log": "您本人查看访问记录",
    "subject.request": "您提出请求", "subject.request_read": "您查看请求进度", "subject_request.decide": "处理您的请求",
    "message.send": "发送短信", "message.sent": "发送短信" };
  const CODE_MESSAGE = {
    invalid_code: "验证码错误或已过期，请重新输入",
    unauthenticated: "验证已过期，请重新验证身份",
    not_found: "未找到相关记录",
    in_delivery: "包裹仍在派送中，暂时无法完成",
    payload_too_large: "提交的内容过长",
    unavailable: "服务暂时不可用，请稍后再试",
  };
  // Where an error's "field" is shown: the API's field path -> the input (and its "-error" line).
  const FIELD_TARGET = { waybill_no: "waybill_no", phone: "phone", code: "code", challenge_id: "code",
    type: "request-type", changes: "changes", text: "request-text" };

  const $ = (id) => document.getElementById(id);
  let session = null; // {token, party, waybill_no, expires_at}
  let challengeId = null;
  let current = null; // the request id being followed

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function when(value) {
    if (!value) return "—";
    const d = new Date(value);
    return isNaN(d.getTime()) ? String(value) : d.toLocaleString("zh-CN", { hour12: false });
  }

  function label(table, value) {
    return Object.prototype.hasOwnProperty.call(table, value) ? table[value] : String(value);
  }

  function fieldName(f) { // "recipient.phone" -> 电话; "masked": the masked snapshot
    if (f === "masked") return "脱敏后的信息";
    const key = String(f).split(".").pop();
    return label(FIELD_NAME, key);
  }

  function purpose(p) { // a code, or {"id", "name", "required", "active"} from the privacy notice
    if (p === null || typeof p !== "object") return label(PURPOSE, p);
    const state = p.required ? "必需" : p.active ? "已同意" : "未同意或已撤回";
    return `${p.name || label(PURPOSE, p.id)}（${state}）`;
  }

  function disclosure(d) { // {"kind", "recipient", "description", "fields", "last_at"}, or a plain string
    if (d === null || typeof d !== "object") return String(d);
    const fields = (d.fields || []).map(fieldName).join("、");
    return [d.description || d.recipient, fields ? `涉及：${fields}` : "", d.last_at ? `最近：${when(d.last_at)}` : ""]
      .filter(Boolean).join("；");
  }

  // --- messages and field errors ---------------------------------------------------------------------

  function say(text, info) {
    const box = $("message");
    box.textContent = text || "";
    box.classList.toggle("info", Boolean(info));
    box.hidden = !text;
  }

  function clearErrors(form) {
    for (const p of form.querySelectorAll(".field-error")) { p.textContent = ""; p.hidden = true; }
    for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
  }

  function fieldError(target, text) { // target: an input's id, or null for the page's message line
    if (!target) { say(text); return; }
    const input = $(target);
    const line = $(target + "-error") || (target.startsWith("change-") ? $("changes-error") : null);
    if (input) input.setAttribute("aria-invalid", "true");
    if (line) { line.textContent = text; line.hidden = false; if (input) input.setAttribute("aria-describedby", line.id); }
    else say(text);
  }

  function targetFor(field, fallback) {
    if (!field) return fallback;
    const parts = String(field).split(/[./]/).filter(Boolean);
    if (parts[0] === "changes" && parts[1] && $("change-" + parts[1])) return "change-" + parts[1];
    return FIELD_TARGET[parts[0]] || fallback;
  }

  function chinese(err, status) {
    if (err && CODE_MESSAGE[err.code]) return CODE_MESSAGE[err.code];
    if (err && /[\u4e00-\u9fff]/.test(err.message || "")) return err.message;
    return status >= 500 ? CODE_MESSAGE.unavailable : "提交的信息有误，请检查后重试";
  }

  function waitText(seconds) {
    return seconds >= 120 ? `约 ${Math.ceil(seconds / 60)} 分钟` : `${seconds} 秒`;
  }

  function holdButton(button, seconds) { // 429: the button waits as long as the service asks
    const text = button.dataset.text || button.textContent;
    button.dataset.text = text;
    button.dataset.waiting = "1";
    button.disabled = true;
    let left = seconds;
    const tick = () => {
      if (left <= 0) { clearInterval(timer); button.textContent = text; delete button.dataset.waiting;
        button.disabled = false; return; }
      button.textContent = `${text}（${left} 秒后可重试）`;
      left -= 1;
    };
    const timer = setInterval(tick, 1000);
    tick();
  }

  function showFailure(res, fallback, button) {
    if (res.status === 401 && session && (!res.error || res.error.code !== "invalid_code")) {
      endSession(CODE_MESSAGE.unauthenticated);
      return;
    }
    if (res.status === 429) {
      const seconds = Math.max(1, parseInt(res.retryAfter, 10) || 60);
      fieldError(fallback, `操作过于频繁，请 ${waitText(seconds)}后再试`);
      if (button) holdButton(button, seconds);
      return;
    }
    fieldError(targetFor(res.error && res.error.field, fallback), chinese(res.error, res.status));
  }

  // --- the API ----------------------------------------------------------------------------------------

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (session) headers.Authorization = "Bearer " + session.token;
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", cache: "no-store" });
    } catch (e) {
      return { ok: false, status: 0, error: { code: "network", message: "网络连接失败，请检查网络后重试" } };
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, data, error: data && data.error ? data.error : null,
      retryAfter: resp.headers.get("Retry-After") };
  }

  async function busy(button, work) {
    if (button.dataset.waiting) return;
    button.disabled = true;
    try { await work(); } finally { if (!button.dataset.waiting) button.disabled = false; }
  }

  // --- steps ------------------------------------------------------------------------------------------

  function show(step) {
    for (const id of ["step-start", "step-code", "step-data"]) $(id).hidden = id !== step;
  }

  function saveSession() { sessionStorage.setItem(SESSION_KEY, JSON.stringify(session)); }

  function endSession(message) {
    session = null;
    challengeId = null;
    current = null;
    sessionStorage.removeItem(SESSION_KEY);
    for (const id of ["data", "access-log", "requests"]) $(id).replaceChildren();
    $("request-status").hidden = true;
    $("code").value = "";
    show("step-start");
    say(message || "", !message);
  }

  function requestsKey() { return REQUESTS_PREFIX + session.waybill_no + "." + session.party; }

  function filedIds() {
    try { return JSON.parse(sessionStorage.getItem(requestsKey()) || "[]").filter((x) => typeof x === "string"); }
    catch (e) { return []; }
  }

  async function onChallenge(ev) {
    ev.preventDefault();
    const form = $("challenge-form");
    clearErrors(form);
    say("");
    const waybill = $("waybill_no").value.replace(/\s/g, "").toUpperCase();
    const phone = $("phone").value.trim(); // the service normalises (spaces, dashes, +86)
    if (!waybill) return fieldError("waybill_no", "请输入运单号");
    if (!phone) return fieldError("phone", "请输入运单上的手机号");
    const button = $("send-code");
    await busy(button, async () => {
      const res = await api("POST", "/v1/subject/challenge", { waybill_no: waybill, phone });
      if (!res.ok) return showFailure(res, "send-code", button);
      challengeId = res.data.challenge_id;
      show("step-code");
      say("请查看短信中的 6 位验证码。固定电话收不到短信，请使用下方投诉渠道。", true);
      $("code").focus();
    });
  }

  async function onVerify(ev) {
    ev.preventDefault();
    clearErrors($("code-form"));
    const code = $("code").value.trim();
    if (!/^[0-9]{6}$/.test(code)) return fieldError("code", "请输入 6 位数字验证码");
    const button = $("verify");
    await busy(button, async () => {
      const res = await api("POST", "/v1/subject/session", { challenge_id: challengeId, code });
      if (!res.ok) return showFailure(res, "code", button);
      const d = res.data;
      session = { token: d.access_token, party: d.party, waybill_no: d.waybill_no,
        expires_at: Date.now() + (Number(d.expires_in) || 0) * 1000 };
      saveSession();
      say("");
      await openData();
    });
  }

  async function openData() {
    show("step-data");
    $("party").textContent = `运单 ${session.waybill_no} · 您是${label(PARTY, session.party)}`;
    const [data, log] = await Promise.all([api("GET", "/v1/subject/data"), api("GET", "/v1/subject/access-log")]);
    if (!session) return;
    if (!data.ok) return showFailure(data, null);
    renderData(data.data);
    if (!log.ok) return showFailure(log, null);
    renderLog(log.data.items || []);
    renderFiled();
    const ids = filedIds();
    if (ids.length) await follow(current && ids.includes(current) ? current : ids[ids.length - 1]);
  }

  function renderData(d) {
    const dl = $("data");
    dl.replaceChildren();
    const add = (name, value) => { dl.append(el("dt", name), el("dd", value === "" || value == null ? "—" : value)); };
    const pd = d.personal_data;
    if (pd) for (const [key, name] of FIELDS) add(name, pd[key]);
    else add("个人信息", "已销毁，无法恢复");
    add("运单状态", label(SHIPMENT_STATUS, d.status));
    add("使用目的", (d.purposes || []).map(purpose).join("、") || "—");
    add("保存期限", [d.retained_until ? `至 ${when(d.retained_until)}` : "", d.retention_note || ""]
      .filter(Boolean).join("；") || "派送结束后按规定期限删除");
    const shared = (d.disclosed_to || []).map(disclosure);
    dd(dl, "已提供给", shared.length ? shared : ["未向他人提供"]);
  }

  function dd(dl, name, lines) { // one term, one line per value
    dl.append(el("dt", name));
    for (const line of lines) dl.append(el("dd", line));
  }

  function renderLog(items) {
    const list = $("access-log");
    list.replaceChildren();
    if (!items.length) { list.append(el("li", "暂无访问记录")); return; }
    for (const it of items) {
      const li = el("li");
      li.append(el("span", when(it.at), "when"));
      const who = [label(ROLE, it.role), it.station ? `网点 ${it.station}` : "",
        it.partner ? `提供给 ${label(PARTNER, it.partner)}` : ""];
      li.append(el("div", who.filter(Boolean).join(" · ")));
      const what = [label(ACTION, it.action), it.purpose ? `目的：${label(PURPOSE, it.purpose)}` : ""];
      li.append(el("div", what.filter(Boolean).join(" · ")));
      if (it.fields && it.fields.length) li.append(el("div", "涉及：" + it.fields.map(fieldName).join("、")));
      list.append(li);
    }
  }

  function renderFiled() {
    const list = $("requests");
    list.replaceChildren();
    for (const id of filedIds().slice().reverse()) {
      const li = el("li");
      li.append(el("span", id, "id"));
      const b = el("button", "查看进度", "secondary");
      b.type = "button";
      b.addEventListener("click", () => follow(id));
      li.append(b);
      list.append(li);
    }
  }

  function renderRequest(r) {
    current = r.id;
    $("request-status").hidden = false;
    $("request-kind").textContent = label(REQUEST_TYPE, r.type);
    $("request-id").textContent = r.id;
    const state = $("request-state");
    state.textContent = label(REQUEST_STATUS, r.status);
    state.dataset.status = r.status;
    $("request-received").textContent = when(r.received_at);
    // due_fallback: this year's public holidays are not published yet, so the deadline counts weekends only.
    $("request-due").textContent = when(r.due_at) + (r.due_fallback ? "（节假日安排公布前按周末推算）" : "");
    $("request-decided").textContent = when(r.decided_at);
    $("request-decided-row").hidden = !r.decided_at;
    const rejected = r.status === "rejected"; // a refusal always has its reason; a completion may have a note
    $("request-reason-label").textContent = rejected ? "理由" : "处理说明";
    $("request-reason").textContent = r.reason || "—";
    $("request-reason-row").hidden = !(rejected || r.reason);
    $("request-complaint").hidden = !rejected;
  }

  async function follow(id) {
    const res = await api("GET", "/v1/subject/requests/" + encodeURIComponent(id));
    if (!res.ok) return showFailure(res, null);
    renderRequest(res.data);
  }

  function onTypeChange() {
    const type = $("request-type").value;
    $("changes").hidden = type !== "correct";
    $("type-help").textContent = TYPE_HELP[type] || "";
  }

  async function onRequest(ev) {
    ev.preventDefault();
    const form = $("request-form");
    clearErrors(form);
    say("");
    const type = $("request-type").value;
    const body = { type };
    if (type === "correct") {
      const changes = {};
      for (const input of $("changes").querySelectorAll("input[data-field]")) {
        if (input.value.trim()) changes[input.dataset.field] = input.value.trim();
      }
      if (!Object.keys(changes).length) return fieldError("changes", "请至少填写一项需要更正的内容");
      body.changes = changes;
    }
    const text = $("request-text").value.trim();
    if (type === "complaint" && !text) return fieldError("request-text", "请填写投诉内容");
    if (text) body.text = text;
    const button = $("request-submit");
    await busy(button, async () => {
      const res = await api("POST", "/v1/subject/requests", body);
      if (!res.ok) return showFailure(res, "request-submit", button);
      const ids = filedIds().filter((x) => x !== res.data.id);
      ids.push(res.data.id);
      sessionStorage.setItem(requestsKey(), JSON.stringify(ids));
      form.reset();
      onTypeChange();
      renderFiled();
      renderRequest(res.data);
      say("请求已提交，我们会在答复期限内处理。", true);
      $("request-status").scrollIntoView({ block: "nearest" });
    });
  }

  function restore() {
    try { session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null"); } catch (e) { session = null; }
    if (!session || typeof session.token !== "string" || !(session.expires_at > Date.now())) {
      session = null;
      sessionStorage.removeItem(SESSION_KEY);
      show("step-start");
      return;
    }
    openData();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("challenge-form").addEventListener("submit", onChallenge);
    $("code-form").addEventListener("submit", onVerify);
    $("restart").addEventListener("click", () => { challengeId = null; clearErrors($("code-form")); show("step-start"); say(""); });
    $("request-form").addEventListener("submit", onRequest);
    $("request-type").addEventListener("change", onTypeChange);
    $("request-refresh").addEventListener("click", () => { if (current) follow(current); });
    $("logout").addEventListener("click", () => endSession(""));
    onTypeChange();
    restore();
  });
})();
