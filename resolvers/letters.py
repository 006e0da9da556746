"""The letters' texts (SPEC §3, §5, §7): registration, recovery codes, password changes,
receipts, refunds and autopay, each a subject, a text body and an escaped HTML body. Every
link in them is built from KABINET_PUBLIC_URL, never from the Host header. `core.outbox`
queues and delivers them."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import NamedTuple

from core.settings import Settings


class Letter(NamedTuple):
    subject: str
    body_text: str
    body_html: str | None


def public_link(settings: Settings, path: str = "/") -> str:
    """A link the service hands out: always under KABINET_PUBLIC_URL, never the Host header."""
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError("a link path must start with a single '/'")
    return settings.public_url.rstrip("/") + path


def _own_link(settings: Settings, url: str) -> str:
    if url.startswith("/"):
        return public_link(settings, url)
    base = settings.public_url.rstrip("/")
    if url == base or url.startswith(base + "/"):
        return url
    raise ValueError("links in letters must point under KABINET_PUBLIC_URL")


def _plural(n: int, one: str, few: str, many: str) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def _minutes(n: int) -> str:
    return f"{n} {_plural(n, 'минуту', 'минуты', 'минут')}"


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%d.%m.%Y %H:%M UTC")


def _money(amount: Decimal, currency: str) -> str:
    digits = f"{amount.quantize(Decimal('0.01')):,.2f}".replace(",", "\u00a0").replace(".", ",")
    return f"{digits}\u00a0{'руб.' if currency == 'RUB' else currency}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _a(url: str, label: str | None = None) -> str:
    return f'<a href="{_e(url)}">{_e(label or url)}</a>'


def _html_page(title: str, paragraphs: Sequence[str]) -> str:
    """A minimal HTML letter; `paragraphs` are HTML fragments whose values are escaped."""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        '<!DOCTYPE html>\n<html lang="ru"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title></head>\n"
        f'<body style="font-family: sans-serif; line-height: 1.5">\n{body}\n</body></html>\n'
    )


def registration_letter(
    settings: Settings, *, login: str, temporary_password: str, contract_number: str
) -> Letter:
    operator, link = settings.operator_name, public_link(settings)
    subject = f"{operator}: логин и пароль для личного кабинета"
    text = (
        "Здравствуйте!\n\n"
        f"Вы зарегистрировались в личном кабинете {operator} по договору № {contract_number}.\n\n"
        f"Логин: {login}\n"
        f"Временный пароль: {temporary_password}\n\n"
        f"Войдите в кабинет: {link}\n"
        "При первом входе кабинет попросит заменить временный пароль на постоянный.\n\n"
        "Никому не сообщайте пароль: сотрудники его никогда не спрашивают. Если вы не "
        "регистрировались, обратитесь в поддержку.\n"
    )
    page = _html_page(
        subject,
        [
            "Здравствуйте!",
            f"Вы зарегистрировались в личном кабинете {_e(operator)} "
            f"по договору № {_e(contract_number)}.",
            f"Логин: <b>{_e(login)}</b><br>Временный пароль: <b>{_e(temporary_password)}</b>",
            f"Войдите в кабинет: {_a(link)}<br>"
            "При первом входе кабинет попросит заменить временный пароль на постоянный.",
            "Никому не сообщайте пароль: сотрудники его никогда не спрашивают. "
            "Если вы не регистрировались, обратитесь в поддержку.",
        ],
    )
    return Letter(subject, text, page)


def recovery_code_letter(settings: Settings, *, code: str, minutes: int) -> Letter:
    operator, link = settings.operator_name, public_link(settings)
    subject = f"{operator}: код для восстановления доступа"
    text = (
        "Здравствуйте!\n\n"
        f"Код для восстановления доступа к личному кабинету: {code}\n"
        f"Код действует {_minutes(minutes)} и подходит один раз.\n\n"
        "Никому не сообщайте код: сотрудники его никогда не спрашивают. Если вы не "
        "восстанавливали доступ, ничего не делайте: пароль останется прежним.\n\n"
        f"Личный кабинет: {link}\n"
    )
    page = _html_page(
        subject,
        [
            "Здравствуйте!",
            f"Код для восстановления доступа к личному кабинету: <b>{_e(code)}</b><br>"
            f"Код действует {_e(_minutes(minutes))} и подходит один раз.",
            "Никому не сообщайте код: сотрудники его никогда не спрашивают. Если вы не "
            "восстанавливали доступ, ничего не делайте: пароль останется прежним.",
            f"Личный кабинет: {_a(link)}",
        ],
    )
    return Letter(subject, text, page)


def recovery_code_sms(settings: Settings, *, code: str, minutes: int) -> str:
    # The last line is the WebOTP form: browsers offer the code only on our own site.
    host = settings.public_url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
    return (
        f"Код восстановления доступа: {code}. Действует {_minutes(minutes)}. "
        "Никому не сообщайте его.\n"
        f"@{host} #{code}"
    )


def password_changed_letter(settings: Settings, *, when: datetime) -> Letter:
    operator, link = settings.operator_name, public_link(settings)
    subject = f"{operator}: пароль от личного кабинета изменён"
    text = (
        "Здравствуйте!\n\n"
        f"Пароль от вашего личного кабинета изменён {_moment(when)}. Все прежние сеансы "
        "завершены.\n\n"
        "Если это сделали не вы, сразу восстановите доступ по коду или обратитесь в "
        f"поддержку.\n\nЛичный кабинет: {link}\n"
    )
    page = _html_page(
        subject,
        [
            "Здравствуйте!",
            f"Пароль от вашего личного кабинета изменён {_e(_moment(when))}. "
            "Все прежние сеансы завершены.",
            "Если это сделали не вы, сразу восстановите доступ по коду или обратитесь в поддержку.",
            f"Личный кабинет: {_a(link)}",
        ],
    )
    return Letter(subject, text, page)


def receipt_letter(
    settings: Settings,
    *,
    receipt_number: str,
    contract_number: str,
    amount: Decimal,
    vat_rate: Decimal,
    vat_amount: Decimal,
    issued_at: datetime,
    receipt_url: str,
) -> Letter:
    """`receipt_url` is a path (`/receipts/…`) or a URL already under KABINET_PUBLIC_URL;
    `vat_rate` (percent) and `vat_amount` are the receipt's own (as stored)."""
    operator, link = settings.operator_name, _own_link(settings, receipt_url)
    total = _money(amount, settings.currency)
    vat = f"В том числе НДС {vat_rate.normalize():f}%: {_money(vat_amount, settings.currency)}"
    subject = f"{operator}: чек № {receipt_number} об оплате по договору № {contract_number}"
    text = (
        "Здравствуйте!\n\n"
        f"Платёж по договору № {contract_number} получен.\n\n"
        f"Чек № {receipt_number} от {_moment(issued_at)}\n"
        f"Сумма: {total}\n"
        f"{vat}\n\n"
        f"Чек для печати (после входа в личный кабинет): {link}\n\n"
        f"Спасибо, что вы с нами!\n{operator}\n"
    )
    page = _html_page(
        subject,
        [
            "Здравствуйте!",
            f"Платёж по договору № {_e(contract_number)} получен.",
            f"Чек № {_e(receipt_number)} от {_e(_moment(issued_at))}<br>Сумма: <b>{_e(total)}</b>"
            f"<br>{_e(vat)}",
            f"Чек для печати (после входа в личный кабинет): {_a(link)}",
            f"Спасибо, что вы с нами!<br>{_e(operator)}",
        ],
    )
    return Letter(subject, text, page)


# -- reminders (SPEC §8) ------------------------------------------------------------------
#
# A reminder is queued for many contracts at once by one statement (resolvers/reminders.py),
# so its texts are templates: `{operator}` and `{link}` come from the settings, the other
# placeholders from each contract's row. An SMS must fit one message (70 characters of
# Cyrillic, UCS-2); tests fill every SMS with the longest realistic values.

SMS_MAX_CHARS = 70


class ReminderText(NamedTuple):
    subject: str
    body_text: str
    sms: str


# What each placeholder holds, as `reminder_money` and `reminder_date` write it.
REMINDER_PLACEHOLDERS = {
    "number": "the contract number",
    "balance": "the balance, 1234,50",
    "debt": "the debt (the balance below zero, without the sign), 1234,50",
    "days": "whole days the balance lasts",
    "amount": "the promised payment's amount, 1234,50",
    "date": "a day, 31.12.2026",
}


def reminder_money(amount: Decimal) -> str:
    """Money in a reminder: "1234,50" (the SQL of resolvers/reminders.py writes the same)."""
    return f"{amount.quantize(Decimal('0.01'))}".replace(".", ",")


def reminder_date(day: date) -> str:
    return day.strftime("%d.%m.%Y")


_SIGNATURE = "\n\nЛичный кабинет: {link}\n{operator}\n"


LOW_BALANCE_TEXT = ReminderText(
    subject="{operator}: на счёте договора № {number} заканчиваются деньги",
    body_text=(
        "Здравствуйте!\n\n"
        "На счёте договора № {number} осталось {balance} руб.: при текущей абонентской "
        "плате этого хватит на {days} дн. Пополните счёт, чтобы услуги не были "
        "приостановлены." + _SIGNATURE
    ),
    sms="Договор {number}: баланс {balance} р., хватит на {days} дн. Пополните.",
)

SUSPENDED_TEXT = ReminderText(
    subject="{operator}: услуги по договору № {number} приостановлены",
    body_text=(
        "Здравствуйте!\n\n"
        "Баланс договора № {number} ниже нуля (долг {debt} руб.), и услуги приостановлены. "
        "Пополните счёт или возьмите обещанный платёж в личном кабинете: услуги "
        "возобновятся сразу, как только баланс станет не меньше нуля." + _SIGNATURE
    ),
    sms="Договор {number}: услуги приостановлены, долг {debt} р.",
)

RESUMED_TEXT = ReminderText(
    subject="{operator}: услуги по договору № {number} возобновлены",
    body_text=(
        "Здравствуйте!\n\n"
        "Оплата по договору № {number} получена, баланс {balance} руб. Услуги снова "
        "работают. Спасибо!" + _SIGNATURE
    ),
    sms="Договор {number}: услуги возобновлены. Спасибо за оплату!",
)

PROMISE_DUE_TEXT = ReminderText(
    subject="{operator}: завтра срок обещанного платежа по договору № {number}",
    body_text=(
        "Здравствуйте!\n\n"
        "Завтра, {date}, наступает срок обещанного платежа по договору № {number}: "
        "{amount} руб. будут списаны со счёта. Если после списания баланс окажется ниже "
        "нуля, услуги будут приостановлены. Пополните счёт заранее." + _SIGNATURE
    ),
    sms="Договор {number}: {date} спишем обещанный платёж {amount} р.",
)

PAUSE_STARTS_TEXT = ReminderText(
    subject="{operator}: завтра начинается интернет-пауза по договору № {number}",
    body_text=(
        "Здравствуйте!\n\n"
        "С {date} по договору № {number} начинается интернет-пауза: услуги "
        "приостанавливаются, списывается только плата за паузу. Отменить паузу можно в "
        "личном кабинете до её начала." + _SIGNATURE
    ),
    sms="Договор {number}: интернет-пауза начнётся {date}.",
)

PAUSE_ENDS_TEXT = ReminderText(
    subject="{operator}: завтра заканчивается интернет-пауза по договору № {number}",
    body_text=(
        "Здравствуйте!\n\n"
        "Интернет-пауза по договору № {number} заканчивается: с {date} услуги снова "
        "работают и абонентская плата списывается как обычно. Проверьте, что на счёте "
        "достаточно денег." + _SIGNATURE
    ),
    sms="Договор {number}: пауза заканчивается, услуги снова с {date}.",
)

REMINDER_TEXTS = (
    LOW_BALANCE_TEXT,
    SUSPENDED_TEXT,
    RESUMED_TEXT,
    PROMISE_DUE_TEXT,
    PAUSE_STARTS_TEXT,
    PAUSE_ENDS_TEXT,
)


def fill_reminder(template: str, **values: str) -> str:
    """A template with its placeholders filled (the statement's text, in Python: tests)."""
    return template.format_map(values)


def refund_letter(
    settings: Settings,
    *,
    contract_number: str,
    amount: Decimal,
    payment_amount: Decimal,
    paid_at: datetime | None,
    points_taken: int,
    refunded_at: datetime,
) -> Letter:
    """A refund of (part of) a top-up has gone through (SPEC §7): the money goes back to the
    way it was paid, the balance is debited by it, and the points it earned are taken
    back."""
    operator = settings.operator_name
    refunded = _money(amount, settings.currency)
    paid = _money(payment_amount, settings.currency)
    when_paid = f" от {_moment(paid_at)}" if paid_at is not None else ""
    subject = f"{operator}: возврат {refunded} по договору № {contract_number}"
    lines = [
        "Здравствуйте!",
        f"Мы вернули {refunded} из платежа {paid}{when_paid} по договору № {contract_number}"
        f" ({_moment(refunded_at)}). Деньги придут тем же способом, которым был оплачен"
        " платёж; баланс договора уменьшен на эту сумму.",
    ]
    if points_taken > 0:
        lines.append(
            f"Бонусные баллы за возвращённую сумму списаны: {points_taken}"
            f" {_plural(points_taken, 'балл', 'балла', 'баллов')}."
        )
    lines.append(f"Спасибо, что вы с нами!\n{operator}")
    text = "\n\n".join(lines) + "\n"
    page = _html_page(subject, [_e(line).replace("\n", "<br>") for line in lines])
    return Letter(subject, text, page)


def _letter(settings: Settings, subject: str, lines: Sequence[str]) -> Letter:
    """A letter of plain lines (the text and its escaped HTML), signed by the operator."""
    lines = [*lines, f"Спасибо, что вы с нами!\n{settings.operator_name}"]
    text = "\n\n".join(lines) + "\n"
    page = _html_page(subject, [_e(line).replace("\n", "<br>") for line in lines])
    return Letter(subject, text, page)


def autopay_changed_letter(
    settings: Settings,
    *,
    contract_number: str,
    enabled: bool,
    mode: str | None = None,
    amount: Decimal | None = None,
    threshold: Decimal | None = None,
    day_of_month: int | None = None,
    method_title: str | None = None,
    forgotten_title: str | None = None,
) -> Letter:
    """Autopay was set (`enabled`, with its rule) or switched off: by the subscriber, or
    because the saved method it used was forgotten (`forgotten_title`) (SPEC §7)."""
    operator, currency = settings.operator_name, settings.currency
    link = public_link(settings)
    if enabled:
        assert amount is not None
        paid = _money(amount, currency)
        if mode == "MONTHLY":
            rule = f"каждый месяц {day_of_month}-го числа на {paid}"
        else:
            below = _money(threshold or Decimal(0), currency)
            rule = f"на {paid}, когда баланс после списаний за день ниже {below}"
        subject = f"{operator}: автоплатёж по договору № {contract_number} включён"
        lines = [
            "Здравствуйте!",
            f"Автоплатёж по договору № {contract_number} включён: {rule},"
            f" со способа оплаты «{method_title}».",
            f"Изменить или выключить его можно в личном кабинете: {link}",
        ]
    else:
        subject = f"{operator}: автоплатёж по договору № {contract_number} выключен"
        why = (
            f"Способ оплаты «{forgotten_title}» удалён, поэтому автоплатёж"
            if forgotten_title is not None
            else "Автоплатёж"
        )
        lines = [
            "Здравствуйте!",
            f"{why} по договору № {contract_number} выключен: баланс больше не будет"
            " пополняться автоматически.",
            f"Включить его снова можно в личном кабинете: {link}",
        ]
    return _letter(settings, subject, lines)


def autopay_failed_letter(
    settings: Settings,
    *,
    contract_number: str,
    amount: Decimal,
    method_title: str,
    failures_in_row: int,
    switched_off: bool,
    failures_to_disable: int,
) -> Letter:
    """An autopay payment failed (the provider declined or it was never completed); the
    `failures_to_disable`-th failure in a row switched autopay off, which it says."""
    operator = settings.operator_name
    paid = _money(amount, settings.currency)
    link = public_link(settings)
    subject = f"{operator}: автоплатёж по договору № {contract_number} не прошёл"
    lines = [
        "Здравствуйте!",
        f"Автоплатёж {paid} по договору № {contract_number} со способа оплаты"
        f" «{method_title}» не прошёл; баланс не пополнен.",
    ]
    if switched_off:
        subject = f"{operator}: автоплатёж по договору № {contract_number} выключен"
        lines.append(
            f"Это {failures_in_row}-я неудача подряд, поэтому автоплатёж выключен. Проверьте"
            f" способ оплаты и включите автоплатёж снова в личном кабинете: {link}"
        )
    else:
        left = failures_to_disable - failures_in_row
        lines.append(
            f"Неудач подряд: {failures_in_row}. После ещё {left}"
            f" {_plural(left, 'неудачи', 'неудач', 'неудач')} подряд автоплатёж выключится."
            f" Пополнить баланс можно в личном кабинете: {link}"
        )
    return _letter(settings, subject, lines)
