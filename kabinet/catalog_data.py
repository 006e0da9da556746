"""Reference catalogue of the Kabinet operator as plain, immutable Python data.

Regions, Internet tariffs, TV channels and packages, paid service options,
bonus-programme rewards and the seller details printed on receipts. The data
is used to seed the database and by tests; it has no project dependencies.
All money values are ``Decimal`` with exactly two decimal places (RUB).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# --------------------------------------------------------------------------- #
# Data classes
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Tariff:
    code: str
    name: str
    region_code: str
    monthly_fee: Decimal
    speed_mbps: int
    traffic_gb: int | None  # None means unlimited traffic
    archived: bool
    description: str


@dataclass(frozen=True, slots=True)
class Channel:
    number: int
    name: str
    genre: str
    hd: bool = False
    must_carry: bool = False


@dataclass(frozen=True, slots=True)
class TvPackage:
    code: str
    name: str
    monthly_fee: Decimal
    description: str
    channel_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ServiceOption:
    code: str
    name: str
    monthly_fee: Decimal
    description: str


@dataclass(frozen=True, slots=True)
class BonusReward:
    code: str
    name: str
    kind: str  # one of REWARD_KINDS
    points_price: int
    credit_amount: Decimal | None = None  # BALANCE_CREDIT only
    tv_package_code: str | None = None  # TV_PACKAGE only
    option_code: str | None = None  # SPEED_BOOST only
    duration_days: int | None = None  # TV_PACKAGE / SPEED_BOOST only


# --------------------------------------------------------------------------- #
# Enumerations
# --------------------------------------------------------------------------- #

GENRES: tuple[str, ...] = (
    "Общероссийские",
    "Новости",
    "Спорт",
    "Кино",
    "Детские",
    "Познавательные",
    "Музыка",
    "Развлекательные",
    "Региональные",
)

REWARD_KINDS: tuple[str, ...] = ("BALANCE_CREDIT", "TV_PACKAGE", "SPEED_BOOST")

# --------------------------------------------------------------------------- #
# Regions
# --------------------------------------------------------------------------- #

REGIONS: tuple[Region, ...] = (
    Region("MOW", "Москва"),
    Region("SPB", "Санкт-Петербург"),
    Region("EKB", "Екатеринбург"),
)

# --------------------------------------------------------------------------- #
# Internet tariffs (prices differ by region: MOW > SPB > EKB)
# --------------------------------------------------------------------------- #

_TARIFF_LINEUP: tuple[tuple[str, str, int, int | None, bool, str], ...] = (
    # code, name, speed_mbps, traffic_gb, archived, description
    (
        "start-30",
        "Старт 30",
        30,
        None,
        True,
        "Архивный тариф: базовая скорость для почты и соцсетей.",
    ),
    (
        "econom-50",
        "Эконом 50",
        50,
        500,
        False,
        "Недорогой тариф с лимитом 500 ГБ в месяц.",
    ),
    (
        "home-100",
        "Домашний 100",
        100,
        None,
        False,
        "Безлимитный интернет для всей семьи.",
    ),
    (
        "home-300",
        "Домашний 300",
        300,
        None,
        False,
        "Видео в 4K и онлайн-игры без задержек.",
    ),
    (
        "home-500",
        "Домашний 500",
        500,
        None,
        False,
        "Высокая скорость для большого числа устройств.",
    ),
    (
        "game-700",
        "Игровой 700",
        700,
        None,
        False,
        "Низкий пинг и приоритет игрового трафика.",
    ),
    (
        "home-1000",
        "Гигабит",
        1000,
        None,
        False,
        "Максимальная скорость 1 Гбит/с, роутер Wi-Fi 6 в подарок.",
    ),
)

_TARIFF_PRICES: dict[str, dict[str, Decimal]] = {
    "MOW": {
        "start-30": Decimal("399.00"),
        "econom-50": Decimal("450.00"),
        "home-100": Decimal("590.00"),
        "home-300": Decimal("750.00"),
        "home-500": Decimal("890.00"),
        "game-700": Decimal("1190.00"),
        "home-1000": Decimal("1450.00"),
    },
    "SPB": {
        "start-30": Decimal("370.00"),
        "econom-50": Decimal("420.00"),
        "home-100": Decimal("550.00"),
        "home-300": Decimal("690.00"),
        "home-500": Decimal("820.00"),
        "game-700": Decimal("1090.00"),
        "home-1000": Decimal("1290.00"),
    },
    "EKB": {
        "start-30": Decimal("350.00"),
        "econom-50": Decimal("380.00"),
        "home-100": Decimal("490.00"),
        "home-300": Decimal("620.00"),
        "home-500": Decimal("740.00"),
        "game-700": Decimal("990.00"),
        "home-1000": Decimal("1150.00"),
    },
}

TARIFFS: tuple[Tariff, ...] = tuple(
    Tariff(
        code=code,
        name=name,
        region_code=region.code,
        monthly_fee=_TARIFF_PRICES[region.code][code],
        speed_mbps=speed,
        traffic_gb=traffic,
        archived=archived,
        description=description,
    )
    for region in REGIONS
    for code, name, speed, traffic, archived, description in _TARIFF_LINEUP
)

# --------------------------------------------------------------------------- #
# TV channels
#
# Numbering: 1-20 must-carry multiplex channels (free for every subscriber),
# 21-40 entertainment, 41-52 news, 53-82 documentary, 83-104 kids,
# 105-129 sport, 130-164 cinema, 165-180 music, 181-200 regional.
# --------------------------------------------------------------------------- #

CHANNELS: tuple[Channel, ...] = (
    Channel(1, "Первый канал", "Общероссийские", hd=True, must_carry=True),
    Channel(2, "Россия 1", "Общероссийские", hd=True, must_carry=True),
    Channel(3, "Матч ТВ", "Спорт", hd=True, must_carry=True),
    Channel(4, "НТВ", "Общероссийские", hd=True, must_carry=True),
    Channel(5, "Пятый канал", "Общероссийские", hd=True, must_carry=True),
    Channel(6, "Россия К", "Общероссийские", hd=True, must_carry=True),
    Channel(7, "Россия 24", "Новости", hd=True, must_carry=True),
    Channel(8, "Карусель", "Детские", hd=False, must_carry=True),
    Channel(9, "ОТР", "Общероссийские", hd=False, must_carry=True),
    Channel(10, "ТВ Центр", "Общероссийские", hd=True, must_carry=True),
    Channel(11, "РЕН ТВ", "Развлекательные", hd=True, must_carry=True),
    Channel(12, "Спас", "Общероссийские", hd=False, must_carry=True),
    Channel(13, "СТС", "Развлекательные", hd=True, must_carry=True),
    Channel(14, "Домашний", "Развлекательные", hd=False, must_carry=True),
    Channel(15, "ТВ-3", "Развлекательные", hd=True, must_carry=True),
    Channel(16, "Пятница!", "Развлекательные", hd=True, must_carry=True),
    Channel(17, "Звезда", "Общероссийские", hd=True, must_carry=True),
    Channel(18, "Мир", "Общероссийские", hd=False, must_carry=True),
    Channel(19, "ТНТ", "Развлекательные", hd=True, must_carry=True),
    Channel(20, "Муз-ТВ", "Музыка", hd=False, must_carry=True),
    Channel(21, "Че", "Развлекательные", hd=False),
    Channel(22, "Суббота!", "Развлекательные", hd=True),
    Channel(23, "Ю", "Развлекательные", hd=False),
    Channel(24, "2x2", "Развлекательные", hd=True),
    Channel(25, "СТС Love", "Развлекательные", hd=False),
    Channel(26, "ТНТ4", "Развлекательные", hd=False),
    Channel(27, "Супер", "Развлекательные", hd=True),
    Channel(28, "Солнце", "Развлекательные", hd=False),
    Channel(29, "Ностальгия", "Развлекательные", hd=False),
    Channel(30, "Сарафан", "Развлекательные", hd=False),
    Channel(31, "Телекафе", "Развлекательные", hd=False),
    Channel(32, "Жара ТВ", "Развлекательные", hd=False),
    Channel(33, "Юмор ТВ", "Развлекательные", hd=False),
    Channel(34, "Кто есть кто", "Развлекательные", hd=False),
    Channel(35, "HD Life", "Развлекательные", hd=True),
    Channel(36, "Ювелирочка", "Развлекательные", hd=False),
    Channel(37, "Шоп энд Шоу", "Развлекательные", hd=False),
    Channel(38, "Дом 2 Live", "Развлекательные", hd=False),
    Channel(39, "ТНТ Comedy", "Развлекательные", hd=True),
    Channel(40, "Эгоист ТВ", "Развлекательные", hd=False),
    Channel(41, "РБК", "Новости", hd=True),
    Channel(42, "Мир 24", "Новости", hd=True),
    Channel(43, "Известия", "Новости", hd=True),
    Channel(44, "360°", "Новости", hd=True),
    Channel(45, "RTVI", "Новости", hd=False),
    Channel(46, "Euronews", "Новости", hd=True),
    Channel(47, "Bloomberg", "Новости", hd=True),
    Channel(48, "CNBC", "Новости", hd=False),
    Channel(49, "Дума ТВ", "Новости", hd=False),
    Channel(50, "Вместе-РФ", "Новости", hd=False),
    Channel(51, "Катюша", "Новости", hd=False),
    Channel(52, "Деловой эфир", "Новости", hd=False),
    Channel(53, "Моя планета", "Познавательные", hd=True),
    Channel(54, "Наука", "Познавательные", hd=True),
    Channel(55, "Живая природа", "Познавательные", hd=True),
    Channel(56, "Время", "Познавательные", hd=False),
    Channel(57, "Поехали!", "Познавательные", hd=False),
    Channel(58, "Загородный", "Познавательные", hd=False),
    Channel(59, "Усадьба", "Познавательные", hd=False),
    Channel(60, "Домашние животные", "Познавательные", hd=False),
    Channel(61, "Психология 21", "Познавательные", hd=False),
    Channel(62, "Кухня ТВ", "Познавательные", hd=True),
    Channel(63, "Здоровое ТВ", "Познавательные", hd=False),
    Channel(64, "Охота и рыбалка", "Познавательные", hd=True),
    Channel(65, "Доктор", "Познавательные", hd=False),
    Channel(66, "Телепутешествия", "Познавательные", hd=True),
    Channel(67, "Еда", "Познавательные", hd=False),
    Channel(68, "Discovery Channel", "Познавательные", hd=True),
    Channel(69, "Animal Planet", "Познавательные", hd=True),
    Channel(70, "National Geographic", "Познавательные", hd=True),
    Channel(71, "Nat Geo Wild", "Познавательные", hd=True),
    Channel(72, "Viasat History", "Познавательные", hd=True),
    Channel(73, "Viasat Nature", "Познавательные", hd=True),
    Channel(74, "Viasat Explore", "Познавательные", hd=True),
    Channel(75, "History", "Познавательные", hd=True),
    Channel(76, "Travel Channel", "Познавательные", hd=True),
    Channel(77, "Техно 24", "Познавательные", hd=False),
    Channel(78, "Дикий", "Познавательные", hd=True),
    Channel(79, "Дикая охота", "Познавательные", hd=True),
    Channel(80, "Дикая рыбалка", "Познавательные", hd=True),
    Channel(81, "Оружие", "Познавательные", hd=False),
    Channel(82, "Зоо ТВ", "Познавательные", hd=False),
    Channel(83, "Мультиландия", "Детские", hd=True),
    Channel(84, "Детский мир", "Детские", hd=False),
    Channel(85, "Мульт", "Детские", hd=True),
    Channel(86, "Тлум", "Детские", hd=True),
    Channel(87, "Уникум", "Детские", hd=False),
    Channel(88, "О!", "Детские", hd=False),
    Channel(89, "Рыжий", "Детские", hd=False),
    Channel(90, "Малыш ТВ", "Детские", hd=False),
    Channel(91, "Радость моя", "Детские", hd=False),
    Channel(92, "Мультимузыка", "Детские", hd=False),
    Channel(93, "Nickelodeon", "Детские", hd=True),
    Channel(94, "Nick Jr.", "Детские", hd=False),
    Channel(95, "Cartoon Network", "Детские", hd=True),
    Channel(96, "Boomerang", "Детские", hd=False),
    Channel(97, "Jim Jam", "Детские", hd=False),
    Channel(98, "Baby TV", "Детские", hd=False),
    Channel(99, "Gulli Girl", "Детские", hd=False),
    Channel(100, "Da Vinci", "Детские", hd=True),
    Channel(101, "Смайлик ТВ", "Детские", hd=False),
    Channel(102, "Ani", "Детские", hd=False),
    Channel(103, "В гостях у сказки", "Детские", hd=False),
    Channel(104, "Капитан Фантастика", "Детские", hd=True),
    Channel(105, "Матч! Арена", "Спорт", hd=True),
    Channel(106, "Матч! Игра", "Спорт", hd=True),
    Channel(107, "Матч! Страна", "Спорт", hd=True),
    Channel(108, "Матч! Боец", "Спорт", hd=True),
    Channel(109, "Матч! Планета", "Спорт", hd=True),
    Channel(110, "Матч! Премьер", "Спорт", hd=True),
    Channel(111, "Матч! Футбол 1", "Спорт", hd=True),
    Channel(112, "Матч! Футбол 2", "Спорт", hd=True),
    Channel(113, "Матч! Футбол 3", "Спорт", hd=True),
    Channel(114, "КХЛ", "Спорт", hd=True),
    Channel(115, "КХЛ Prime", "Спорт", hd=True),
    Channel(116, "Старт", "Спорт", hd=True),
    Channel(117, "Футбол", "Спорт", hd=True),
    Channel(118, "Бокс ТВ", "Спорт", hd=True),
    Channel(119, "Eurosport 1", "Спорт", hd=True),
    Channel(120, "Eurosport 2", "Спорт", hd=True),
    Channel(121, "Viasat Sport", "Спорт", hd=True),
    Channel(122, "Авто Плюс", "Спорт", hd=True),
    Channel(123, "Драйв", "Спорт", hd=True),
    Channel(124, "Моторспорт ТВ", "Спорт", hd=True),
    Channel(125, "M-1 Global", "Спорт", hd=True),
    Channel(126, "Russian Extreme", "Спорт", hd=True),
    Channel(127, "Конный мир", "Спорт", hd=False),
    Channel(128, "Теннис ТВ", "Спорт", hd=True),
    Channel(129, "Баскет ТВ", "Спорт", hd=True),
    Channel(130, "Кинопремьера", "Кино", hd=True),
    Channel(131, "Киносвидание", "Кино", hd=True),
    Channel(132, "Кинохит", "Кино", hd=True),
    Channel(133, "Киносемья", "Кино", hd=True),
    Channel(134, "Кинокомедия", "Кино", hd=True),
    Channel(135, "Киномикс", "Кино", hd=True),
    Channel(136, "Индийское кино", "Кино", hd=False),
    Channel(137, "Русский иллюзион", "Кино", hd=False),
    Channel(138, "Мужское кино", "Кино", hd=True),
    Channel(139, "Киносерия", "Кино", hd=True),
    Channel(140, "Родное кино", "Кино", hd=False),
    Channel(141, "Наше новое кино", "Кино", hd=False),
    Channel(142, "Русский роман", "Кино", hd=False),
    Channel(143, "Русский детектив", "Кино", hd=False),
    Channel(144, "Дом кино", "Кино", hd=False),
    Channel(145, "Дом кино Премиум", "Кино", hd=True),
    Channel(146, "Победа", "Кино", hd=False),
    Channel(147, "Иллюзион+", "Кино", hd=False),
    Channel(148, "Еврокино", "Кино", hd=False),
    Channel(149, "TV1000", "Кино", hd=True),
    Channel(150, "TV1000 Action", "Кино", hd=True),
    Channel(151, "TV1000 Русское кино", "Кино", hd=True),
    Channel(152, "ViP Premiere", "Кино", hd=True),
    Channel(153, "ViP Megahit", "Кино", hd=True),
    Channel(154, "ViP Comedy", "Кино", hd=True),
    Channel(155, "ViP Serial", "Кино", hd=True),
    Channel(156, "Amedia Premium", "Кино", hd=True),
    Channel(157, "Amedia Hit", "Кино", hd=True),
    Channel(158, "Amedia 1", "Кино", hd=True),
    Channel(159, "Hollywood", "Кино", hd=True),
    Channel(160, "Shot TV", "Кино", hd=True),
    Channel(161, "НСТ", "Кино", hd=False),
    Channel(162, "Любимое кино", "Кино", hd=False),
    Channel(163, "Мосфильм. Золотая коллекция", "Кино", hd=True),
    Channel(164, "KinoJam", "Кино", hd=True),
    Channel(165, "RU.TV", "Музыка", hd=True),
    Channel(166, "Europa Plus TV", "Музыка", hd=True),
    Channel(167, "Шансон ТВ", "Музыка", hd=False),
    Channel(168, "Bridge TV", "Музыка", hd=True),
    Channel(169, "Bridge Русский Хит", "Музыка", hd=False),
    Channel(170, "Bridge Фрэш", "Музыка", hd=False),
    Channel(171, "Bridge Классик", "Музыка", hd=False),
    Channel(172, "Bridge Шлягер", "Музыка", hd=False),
    Channel(173, "Music Box Gold", "Музыка", hd=False),
    Channel(174, "Mezzo", "Музыка", hd=True),
    Channel(175, "Mezzo Live", "Музыка", hd=True),
    Channel(176, "MTV Live", "Музыка", hd=True),
    Channel(177, "ТНТ Music", "Музыка", hd=False),
    Channel(178, "Ля-минор ТВ", "Музыка", hd=False),
    Channel(179, "Только хиты", "Музыка", hd=False),
    Channel(180, "Дискотека 80-х ТВ", "Музыка", hd=False),
    Channel(181, "Москва 24", "Региональные", hd=True),
    Channel(182, "Москва Доверие", "Региональные", hd=False),
    Channel(183, "Подмосковье", "Региональные", hd=False),
    Channel(184, "Столица Плюс", "Региональные", hd=False),
    Channel(185, "Санкт-Петербург", "Региональные", hd=True),
    Channel(186, "78", "Региональные", hd=True),
    Channel(187, "ЛОТ", "Региональные", hd=False),
    Channel(188, "Невский экран", "Региональные", hd=False),
    Channel(189, "ОТВ", "Региональные", hd=True),
    Channel(190, "Четвёртый канал", "Региональные", hd=True),
    Channel(191, "Союз", "Региональные", hd=False),
    Channel(192, "Урал-Информ ТВ", "Региональные", hd=False),
    Channel(193, "Губерния", "Региональные", hd=False),
    Channel(194, "Новый век", "Региональные", hd=False),
    Channel(195, "Башкортостан 24", "Региональные", hd=False),
    Channel(196, "Крым 24", "Региональные", hd=False),
    Channel(197, "Дон 24", "Региональные", hd=False),
    Channel(198, "Кубань 24", "Региональные", hd=False),
    Channel(199, "Енисей", "Региональные", hd=False),
    Channel(200, "Волга", "Региональные", hd=False),
)

# --------------------------------------------------------------------------- #
# TV packages (must-carry channels 1-20 are never part of a package)
# --------------------------------------------------------------------------- #

_BASE_CHANNELS: tuple[int, ...] = (
    *range(21, 41),  # entertainment
    *range(41, 49),  # news
    *range(53, 68),  # documentary
    *range(83, 93),  # kids
    *range(105, 107),  # sport
    *range(130, 132),  # cinema
    *range(165, 168),  # music
)

_EXTENDED_CHANNELS: tuple[int, ...] = (
    *_BASE_CHANNELS,
    *range(49, 53),  # news
    *range(68, 83),  # documentary
    *range(93, 101),  # kids
    *range(107, 111),  # sport
    *range(132, 141),  # cinema
)

TV_PACKAGES: tuple[TvPackage, ...] = (
    TvPackage(
        code="base",
        name="Базовый",
        monthly_fee=Decimal("249.00"),
        description="60 популярных каналов: развлечения, новости, кино и мультфильмы.",
        channel_numbers=_BASE_CHANNELS,
    ),
    TvPackage(
        code="extended",
        name="Расширенный",
        monthly_fee=Decimal("449.00"),
        description="100 каналов: всё из «Базового» плюс познавательные и детские.",
        channel_numbers=_EXTENDED_CHANNELS,
    ),
    TvPackage(
        code="sport",
        name="Спорт",
        monthly_fee=Decimal("399.00"),
        description="Футбол, хоккей, единоборства и автоспорт в HD.",
        channel_numbers=tuple(range(105, 130)),
    ),
    TvPackage(
        code="cinema",
        name="Кино",
        monthly_fee=Decimal("349.00"),
        description="Кинопремьеры, сериалы и классика отечественного кино.",
        channel_numbers=tuple(range(130, 165)),
    ),
    TvPackage(
        code="kids",
        name="Детский",
        monthly_fee=Decimal("199.00"),
        description="Мультфильмы и познавательные программы для детей.",
        channel_numbers=tuple(range(83, 105)),
    ),
    TvPackage(
        code="music",
        name="Музыка",
        monthly_fee=Decimal("149.00"),
        description="Хиты, шансон, классика и концерты.",
        channel_numbers=tuple(range(165, 181)),
    ),
    TvPackage(
        code="premium",
        name="Премиум",
        monthly_fee=Decimal("599.00"),
        description="Премьерные фильмы и сериалы, топовые футбольные и хоккейные трансляции.",
        channel_numbers=(110, 111, 112, 113, 115, 145, *range(149, 159)),
    ),
)

# --------------------------------------------------------------------------- #
# Paid service options
# --------------------------------------------------------------------------- #

SERVICE_OPTIONS: tuple[ServiceOption, ...] = (
    ServiceOption(
        code="static-ip",
        name="Статический IP",
        monthly_fee=Decimal("150.00"),
        description="Постоянный внешний IP-адрес для удалённого доступа и серверов.",
    ),
    ServiceOption(
        code="antivirus",
        name="Антивирус",
        monthly_fee=Decimal("99.00"),
        description="Защита до 3 устройств от вирусов и фишинга.",
    ),
    ServiceOption(
        code="parental-control",
        name="Родительский контроль",
        monthly_fee=Decimal("79.00"),
        description="Фильтрация нежелательных сайтов и расписание доступа для детей.",
    ),
    ServiceOption(
        code="speed-boost",
        name="Турбо-кнопка",
        monthly_fee=Decimal("199.00"),
        description="Увеличение скорости в два раза сверх тарифа.",
    ),
    ServiceOption(
        code="cloud-dvr",
        name="Запись эфира",
        monthly_fee=Decimal("149.00"),
        description="Облачная запись передач до 100 часов и просмотр архива за 7 дней.",
    ),
    ServiceOption(
        code="router-rent",
        name="Аренда роутера",
        monthly_fee=Decimal("120.00"),
        description="Двухдиапазонный Wi-Fi роутер в аренду с бесплатной заменой.",
    ),
)

# --------------------------------------------------------------------------- #
# Bonus programme rewards
# --------------------------------------------------------------------------- #

BONUS_REWARDS: tuple[BonusReward, ...] = (
    BonusReward(
        code="credit-100",
        name="100 ₽ на баланс",
        kind="BALANCE_CREDIT",
        points_price=200,
        credit_amount=Decimal("100.00"),
    ),
    BonusReward(
        code="credit-300",
        name="300 ₽ на баланс",
        kind="BALANCE_CREDIT",
        points_price=550,
        credit_amount=Decimal("300.00"),
    ),
    BonusReward(
        code="cinema-30d",
        name="Пакет «Кино» на 30 дней",
        kind="TV_PACKAGE",
        points_price=400,
        tv_package_code="cinema",
        duration_days=30,
    ),
    BonusReward(
        code="kids-30d",
        name="Пакет «Детский» на 30 дней",
        kind="TV_PACKAGE",
        points_price=250,
        tv_package_code="kids",
        duration_days=30,
    ),
    BonusReward(
        code="speed-boost-7d",
        name="Турбо-кнопка на 7 дней",
        kind="SPEED_BOOST",
        points_price=150,
        option_code="speed-boost",
        duration_days=7,
    ),
)
